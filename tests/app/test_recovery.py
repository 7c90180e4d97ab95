"""Positions, recovery and history end to end: real server, real `websockets` clients.

v1 clients offer the ``pubsocket.v1`` subprotocol; plain clients offer none and must see
exactly the seed protocol (``json(data)`` frames, no acks, no offsets).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket.brokers import HistoryPolicy
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, make_settings, normalize_from

V1 = ["pubsocket.v1"]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def recovery_app(**changes: Any) -> App:
    app = App(make_settings(**changes))
    pubsub("/ws/chat", app=app, history={"t*": HistoryPolicy(5, 60), "off.*": None})
    return app


def cmd(action: str, topic: str, **extra: Any) -> str:
    return json.dumps({"action": action, "topic": topic, **extra})


async def recv_json(ws: ClientConnection, timeout: float = 3.0) -> Any:
    return normalize_from(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def nothing_more(ws: ClientConnection, wait: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), wait)


async def v1_client(srv: Any) -> ClientConnection:
    ws = await connect(f"{srv.ws}/ws/chat", subprotocols=V1)  # type: ignore[arg-type]
    assert ws.subprotocol == "pubsocket.v1"
    return ws


async def subscribe(ws: ClientConnection, topic: str, cmd_id: Any = "s",
                    **extra: Any) -> dict[str, Any]:
    await ws.send(cmd("subscribe", topic, id=cmd_id, **extra))
    ack = await recv_json(ws)
    assert ack["type"] == "ack" and ack["id"] == cmd_id and ack["topic"] == topic, ack
    assert isinstance(ack["epoch"], str) and ack["epoch"]
    return ack  # type: ignore[no-any-return]


async def publish_all(ws: ClientConnection, topic: str, items: list[Any]) -> list[int]:
    """Publish through a v1 connection not subscribed to `topic`; the acks' offsets."""
    ids = [f"p{i}" for i in range(len(items))]
    for cmd_id, data in zip(ids, items, strict=True):
        await ws.send(cmd("publish", topic, data=data, id=cmd_id))
    acks = [await recv_json(ws) for _ in ids]
    assert [a["id"] for a in acks] == ids
    return [a["offset"] for a in acks]


async def read_messages(ws: ClientConnection, topic: str, n: int) -> list[dict[str, Any]]:
    got = [await recv_json(ws) for _ in range(n)]
    assert all(m["type"] == "message" and m["topic"] == topic for m in got), got
    return got


# -- recovery over a reconnect ----------------------------------------------------------------


async def test_reconnect_with_since_replays_exactly_what_was_missed(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    sub = await v1_client(srv)
    ack = await subscribe(sub, "room")
    assert ack["offset"] == 0
    epoch = ack["epoch"]
    assert await publish_all(pub, "room", ["a", "b", "c"]) == [1, 2, 3]
    seen = await read_messages(sub, "room", 3)
    assert [(m["offset"], m["data"]) for m in seen] == [(1, "a"), (2, "b"), (3, "c")]
    await sub.close()

    assert await publish_all(pub, "room", ["d", "e", "f", "g"]) == [4, 5, 6, 7]
    back = await v1_client(srv)
    ack = await subscribe(back, "room", "r", since={"offset": 3, "epoch": epoch})
    assert ack == {"type": "ack", "id": "r", "topic": "room", "offset": 3, "epoch": epoch,
                   "recovered": True}
    missed = await read_messages(back, "room", 4)
    assert [(m["offset"], m["data"]) for m in missed] == [(4, "d"), (5, "e"), (6, "f"),
                                                         (7, "g")]
    assert await publish_all(pub, "room", ["live"]) == [8]
    assert await recv_json(back) == {"type": "message", "topic": "room", "offset": 8,
                                     "data": "live"}
    await nothing_more(back)  # none twice
    await back.close()
    await pub.close()


async def test_since_the_current_position_recovers_with_no_replay(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    await publish_all(pub, "room", [1, 2])
    ws = await v1_client(srv)
    epoch = (await subscribe(ws, "room"))["epoch"]
    await ws.close()
    back = await v1_client(srv)
    ack = await subscribe(back, "room", "r", since={"offset": 2, "epoch": epoch})
    assert ack["recovered"] is True and ack["offset"] == 2
    await nothing_more(back)
    await back.close()
    await pub.close()


async def test_subscribe_with_since_is_answered_without_an_id(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    await publish_all(pub, "room", ["x", "y"])
    first = await v1_client(srv)
    epoch = (await subscribe(first, "room"))["epoch"]
    await first.close()
    ws = await v1_client(srv)
    await ws.send(cmd("subscribe", "room", since={"offset": 1, "epoch": epoch}))
    assert await recv_json(ws) == {"type": "ack", "topic": "room", "offset": 1,
                                   "epoch": epoch, "recovered": True}
    assert await recv_json(ws) == {"type": "message", "topic": "room", "offset": 2,
                                   "data": "y"}
    await nothing_more(ws)
    await ws.close()
    await pub.close()


async def test_wrong_epoch_is_not_recovered_and_replays_nothing(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    await publish_all(pub, "room", [1, 2, 3])
    ws = await v1_client(srv)
    await ws.send(cmd("subscribe", "room", id="r", since={"offset": 1, "epoch": "stale"}))
    ack = await recv_json(ws)
    assert ack["recovered"] is False
    assert ack["offset"] == 3 and ack["epoch"] != "stale"
    await nothing_more(ws)
    await publish_all(pub, "room", [4])
    assert await recv_json(ws) == {"type": "message", "topic": "room", "offset": 4, "data": 4}
    await ws.close()
    await pub.close()


async def test_more_missed_than_history_holds_is_not_recovered(serve: Any) -> None:
    srv = await serve(recovery_app())  # "t*" keeps 5
    pub = await v1_client(srv)
    sub = await v1_client(srv)
    epoch = (await subscribe(sub, "t1"))["epoch"]
    await publish_all(pub, "t1", [1])
    await read_messages(sub, "t1", 1)
    await sub.close()
    await publish_all(pub, "t1", list(range(2, 9)))  # 7 missed, 5 kept
    back = await v1_client(srv)
    ack = await subscribe(back, "t1", "r", since={"offset": 1, "epoch": epoch})
    assert ack == {"type": "ack", "id": "r", "topic": "t1", "offset": 8, "epoch": epoch,
                   "recovered": False}
    await nothing_more(back)  # no partial history
    await publish_all(pub, "t1", [9])
    assert (await recv_json(back))["offset"] == 9
    await back.close()
    await pub.close()


async def test_exactly_as_many_missed_as_history_holds_is_recovered(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    await publish_all(pub, "t2", [1])
    ws = await v1_client(srv)
    epoch = (await subscribe(ws, "t2"))["epoch"]
    await ws.close()
    await publish_all(pub, "t2", list(range(2, 7)))  # 5 missed, 5 kept
    back = await v1_client(srv)
    ack = await subscribe(back, "t2", "r", since={"offset": 1, "epoch": epoch})
    assert ack["recovered"] is True
    assert [m["offset"] for m in await read_messages(back, "t2", 5)] == [2, 3, 4, 5, 6]
    await nothing_more(back)
    await back.close()
    await pub.close()


async def test_since_on_a_topic_without_history(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await ws.send(cmd("subscribe", "off.x", id="r", since={"offset": 0, "epoch": ""}))
    ack = await recv_json(ws)
    assert ack == {"type": "ack", "id": "r", "topic": "off.x", "offset": 0, "epoch": "",
                   "recovered": False}
    pub = await v1_client(srv)
    await pub.send(cmd("publish", "off.x", data="z", id="p"))
    assert await recv_json(pub) == {"type": "ack", "id": "p"}  # no offset: no position
    assert await recv_json(ws) == {"type": "message", "topic": "off.x", "data": "z"}
    await ws.close()
    await pub.close()


async def test_bad_since_is_a_bad_field_error(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await ws.send(cmd("subscribe", "room", id="b", since={"offset": -1, "epoch": "e"}))
    err = await recv_json(ws)
    assert (err["type"], err["code"], err["id"]) == ("error", "bad_field", "b")
    ack = await subscribe(ws, "room", "ok")  # still working
    assert ack["offset"] == 0
    await ws.close()


# -- the history command --------------------------------------------------------------------


async def test_history_command(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await publish_all(ws, "h", [{"n": n} for n in range(1, 7)])
    await ws.send(cmd("history", "h", id="all"))
    full = await recv_json(ws)
    epoch = full["epoch"]
    assert full == {"type": "history", "id": "all", "topic": "h", "offset": 6, "epoch": epoch,
                    "publications": [{"offset": n, "data": {"n": n}}
                                     for n in range(1, 7)]}
    await ws.send(cmd("history", "h", id="last2", limit=2))
    assert await recv_json(ws) == {
        "type": "history", "id": "last2", "topic": "h", "offset": 6, "epoch": epoch,
        "publications": [{"offset": 5, "data": {"n": 5}},
                         {"offset": 6, "data": {"n": 6}}]}
    await ws.send(cmd("history", "h", id="since", since={"offset": 3, "epoch": epoch}))
    assert [p["offset"] for p in (await recv_json(ws))["publications"]] == [4, 5, 6]
    await ws.send(cmd("history", "h", id="since1", limit=1,
                      since={"offset": 3, "epoch": epoch}))
    assert [p["offset"] for p in (await recv_json(ws))["publications"]] == [4]
    await ws.send(cmd("history", "h", id="top", since={"offset": 6, "epoch": epoch}))
    assert (await recv_json(ws))["publications"] == []
    await ws.send(cmd("history", "h", id="pos", limit=0))
    assert await recv_json(ws) == {"type": "history", "id": "pos", "topic": "h", "offset": 6,
                                   "epoch": epoch, "publications": []}
    await ws.close()


@pytest.mark.parametrize("since", [{"offset": 1, "epoch": "stale"}, {"offset": 99, "epoch": None}])
async def test_history_command_unrecoverable_position(serve: Any, since: dict[str, Any]) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await publish_all(ws, "h", [1, 2, 3])
    if since["epoch"] is None:  # ahead of the top, in the right epoch
        await ws.send(cmd("history", "h", id="top", limit=0))
        since = {**since, "epoch": (await recv_json(ws))["epoch"]}
    await ws.send(cmd("history", "h", id="u", since=since))
    err = await recv_json(ws)
    assert (err["type"], err["code"], err["id"]) == ("error", "unrecoverable_position", "u")
    await ws.close()


async def test_history_command_past_what_is_kept_is_unrecoverable(serve: Any) -> None:
    srv = await serve(recovery_app())  # "t*" keeps 5
    ws = await v1_client(srv)
    await publish_all(ws, "t3", list(range(1, 9)))
    await ws.send(cmd("history", "t3", id="top", limit=0))
    epoch = (await recv_json(ws))["epoch"]
    await ws.send(cmd("history", "t3", id="old", since={"offset": 1, "epoch": epoch}))
    err = await recv_json(ws)
    assert (err["code"], err["id"]) == ("unrecoverable_position", "old")
    await ws.send(cmd("history", "t3", id="kept"))
    assert [p["offset"] for p in (await recv_json(ws))["publications"]] == [4, 5, 6, 7, 8]
    await ws.close()


async def test_history_command_errors(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    for bad, code in ((cmd("history", "h", id=1, limit=1001), "bad_field"),
                      (cmd("history", "h", id=2, limit=-1), "bad_field"),
                      (cmd("history", "h", id=3, since=7), "bad_field"),
                      (cmd("history", "bad topic", id=4), "invalid_topic")):
        await ws.send(bad)
        err = await recv_json(ws)
        assert (err["type"], err["code"]) == ("error", code)
        assert err["id"] == json.loads(bad)["id"]
    await ws.close()


# -- plain mode is unchanged ----------------------------------------------------------------


async def test_plain_clients_get_the_seed_protocol_exactly(serve: Any) -> None:
    srv = await serve(recovery_app())
    url = f"{srv.ws}/ws/chat"
    async with connect(url) as plain, connect(url) as other:
        assert plain.subprotocol is None
        # `since` (valid or not) is ignored: no ack, no replay, no error
        await plain.send(cmd("subscribe", "room", id="s", since={"offset": 0, "epoch": "x"}))
        await other.send(cmd("subscribe", "room", since="junk"))
        await plain.send(cmd("history", "room", id="h"))
        err = await recv_json(plain)
        assert (err["type"], err["code"], err["id"]) == ("error", "bad_action", "h")
        await other.send(cmd("publish", "room", data={"message": "Hello!"}, id="p"))
        assert await asyncio.wait_for(plain.recv(), 3) == '{"message":"Hello!"}'
        assert await asyncio.wait_for(other.recv(), 3) == '{"message":"Hello!"}'
        await other.send(cmd("publish", "room", data=[1, "é"]))
        assert await asyncio.wait_for(plain.recv(), 3) == '[1,"é"]'
        assert await asyncio.wait_for(other.recv(), 3) == '[1,"é"]'
        await nothing_more(plain)
        await nothing_more(other)


# -- HTTP ---------------------------------------------------------------------------------------


async def http_publish(srv: Any, topic: str, data: Any) -> dict[str, Any]:
    status, _, body = await ahttp("POST", f"{srv.http}/api/publish",
                                  json.dumps({"topic": topic, "data": data}).encode(),
                                  {"Content-Type": "application/json", **AUTH})
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


async def http_history(srv: Any, auth: bool = True,
                       **params: Any) -> tuple[int, dict[str, Any]]:
    status, _, body = await ahttp("GET", f"{srv.http}/api/history?{urlencode(params)}",
                                  None, AUTH if auth else {})
    return status, json.loads(body)


async def test_http_publish_returns_offset_and_epoch(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await subscribe(ws, "news")
    first = await http_publish(srv, "news", {"h": 1})
    assert first == {"ok": True, "offset": 1, "epoch": first["epoch"]}
    assert isinstance(first["epoch"], str) and first["epoch"]
    second = await http_publish(srv, "news", {"h": 2})
    assert second == {"ok": True, "offset": 2, "epoch": first["epoch"]}
    assert [m["offset"] for m in await read_messages(ws, "news", 2)] == [1, 2]
    assert await http_publish(srv, "off.news", 1) == {"ok": True}  # no history, no position
    await ws.close()


async def test_http_history(serve: Any) -> None:
    srv = await serve(recovery_app())
    epoch = ""
    for n in range(1, 5):
        epoch = (await http_publish(srv, "feed", {"n": n}))["epoch"]
    status, body = await http_history(srv, topic="feed")
    assert status == 200
    assert body == {"topic": "feed", "offset": 4, "epoch": epoch,
                    "publications": [{"offset": n, "data": {"n": n}} for n in range(1, 5)]}
    status, body = await http_history(srv, topic="feed", limit=2)
    assert (status, [p["offset"] for p in body["publications"]]) == (200, [3, 4])
    status, body = await http_history(srv, topic="feed", since=1, epoch=epoch)
    assert (status, [p["offset"] for p in body["publications"]]) == (200, [2, 3, 4])
    status, body = await http_history(srv, topic="feed", since=4, epoch=epoch)
    assert (status, body["publications"], body["offset"]) == (200, [], 4)
    status, body = await http_history(srv, topic="feed", limit=0)
    assert (status, body["publications"], body["offset"]) == (200, [], 4)


async def test_http_history_needs_the_api_token(serve: Any) -> None:
    srv = await serve(recovery_app())
    status, body = await http_history(srv, auth=False, topic="feed")
    assert status == 401
    assert body["error"] == "unauthorized"
    status, _, _ = await ahttp("GET", f"{srv.http}/api/history?topic=feed", None,
                               {"Authorization": "Bearer wrong-key"})
    assert status == 401


@pytest.mark.parametrize("params", [
    {}, {"topic": "bad topic"}, {"topic": "x" * 256},
    {"topic": "feed", "limit": "abc"}, {"topic": "feed", "limit": "1001"},
    {"topic": "feed", "limit": "-1"}, {"topic": "feed", "since": "-1"},
    {"topic": "feed", "since": "1.5"},
    # str.isdigit() is not the rule: these are digits to Python, not integers on the wire
    {"topic": "feed", "limit": "\u00b2"}, {"topic": "feed", "since": "\u00b2", "epoch": "e"},
    {"topic": "feed", "limit": "\u0661"},
])
async def test_http_history_bad_params_are_400(serve: Any, params: dict[str, str]) -> None:
    srv = await serve(recovery_app())
    status, body = await http_history(srv, **params)
    assert status == 400
    assert body["error"] in {"invalid_topic", "bad_field"}


async def test_http_history_unrecoverable_position_is_409(serve: Any) -> None:
    srv = await serve(recovery_app())
    epoch = ""
    for n in range(1, 9):
        epoch = (await http_publish(srv, "t4", n))["epoch"]  # "t*" keeps 5
    for params in ({"since": 1, "epoch": epoch}, {"since": 2, "epoch": "stale"},
                   {"since": 20, "epoch": epoch}, {"since": 6}):
        status, body = await http_history(srv, topic="t4", **params)
        assert status == 409, params
        assert body["error"] == "unrecoverable_position"
    status, body = await http_history(srv, topic="t4", since=3, epoch=epoch)
    assert (status, [p["offset"] for p in body["publications"]]) == (200, [4, 5, 6, 7, 8])


async def test_resubscribing_on_the_same_connection_honours_since_afresh(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    ws = await v1_client(srv)
    epoch = (await subscribe(ws, "room"))["epoch"]
    await publish_all(pub, "room", ["a", "b", "c"])
    assert [m["offset"] for m in await read_messages(ws, "room", 3)] == [1, 2, 3]
    ack = await subscribe(ws, "room", "again", since={"offset": 1, "epoch": epoch})
    assert ack["recovered"] is True
    assert [m["data"] for m in await read_messages(ws, "room", 2)] == ["b", "c"]
    await publish_all(pub, "room", ["d"])
    assert [m["offset"] for m in await read_messages(ws, "room", 1)] == [4]
    await nothing_more(ws)
    await ws.close()
    await pub.close()


async def test_history_of_a_topic_without_history(serve: Any) -> None:
    srv = await serve(recovery_app())
    ws = await v1_client(srv)
    await ws.send(cmd("publish", "off.h", data=1, id="p"))
    assert await recv_json(ws) == {"type": "ack", "id": "p"}
    await ws.send(cmd("history", "off.h", id="q"))
    assert await recv_json(ws) == {"type": "history", "id": "q", "topic": "off.h", "offset": 0,
                                   "epoch": "", "publications": []}
    status, body = await http_history(srv, topic="off.h")
    assert (status, body) == (200, {"topic": "off.h", "offset": 0, "epoch": "",
                                    "publications": []})
    await ws.close()


async def test_many_subscribers_recover_concurrently(serve: Any) -> None:
    srv = await serve(recovery_app())
    pub = await v1_client(srv)
    first = await v1_client(srv)
    epoch = (await subscribe(first, "room"))["epoch"]
    await first.close()
    await publish_all(pub, "room", list(range(1, 11)))
    clients = [await v1_client(srv) for _ in range(5)]
    for i, ws in enumerate(clients):
        await ws.send(cmd("subscribe", "room", id=i, since={"offset": i, "epoch": epoch}))
    await publish_all(pub, "room", [11])
    for i, ws in enumerate(clients):
        ack = await recv_json(ws)
        assert (ack["id"], ack["recovered"], ack["offset"]) == (i, True, i)
        got = await read_messages(ws, "room", 11 - i)
        assert [m["offset"] for m in got] == list(range(i + 1, 12))
        await nothing_more(ws, 0.05)
        await ws.close()
    await pub.close()
