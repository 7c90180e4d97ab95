"""`GET /api/history` and a v1 socket share the history reply caps (issue 15): a real
server on port 0, real HTTP and WebSocket clients."""

from __future__ import annotations

import json
from typing import Any

from tests.app.test_recovery import (
    cmd,
    http_history,
    http_publish,
    recovery_app,
    recv_json,
    v1_client,
)

PAD = "x" * 80  # {"n": N, "pad": PAD} is about 100 bytes of JSON


async def test_http_history_pages_stop_at_the_byte_cap(serve: Any) -> None:
    srv = await serve(recovery_app(history_reply_bytes=250))
    epoch = ""
    for n in range(1, 6):
        epoch = (await http_publish(srv, "feed", {"n": n, "pad": PAD}))["epoch"]
    status, body = await http_history(srv, topic="feed", limit=5)
    assert status == 200 and body["offset"] == 5
    assert [p["offset"] for p in body["publications"]] == [1, 2]  # cut short: page on
    pages, since = [], 0
    for _ in range(5):  # bounded: page with since until the position is reached
        status, body = await http_history(srv, topic="feed", since=since, epoch=epoch)
        assert status == 200, body
        pages.append([p["offset"] for p in body["publications"]])
        since = pages[-1][-1]
        if since == body["offset"]:
            break
    assert pages == [[1, 2], [3, 4], [5]]


async def test_http_history_holds_at_most_history_reply_limit(serve: Any) -> None:
    srv = await serve(recovery_app(history_reply_limit=2))
    for n in range(1, 5):
        await http_publish(srv, "feed", {"n": n})
    status, body = await http_history(srv, topic="feed", limit=4)
    assert (status, [p["offset"] for p in body["publications"]]) == (200, [3, 4])


async def test_a_v1_socket_pages_the_same_way(serve_any: Any) -> None:
    # Native and ASGI: each history command reads the connection's `backlog` first.
    srv = await serve_any(recovery_app(history_reply_bytes=250))
    epoch = ""
    for n in range(1, 6):
        epoch = (await http_publish(srv, "feed", {"n": n, "pad": PAD}))["epoch"]
    ws = await v1_client(srv)
    await ws.send(cmd("history", "feed", id=1, since={"offset": 2, "epoch": epoch}))
    reply = await recv_json(ws)
    assert reply["type"] == "history" and reply["offset"] == 5
    assert [p["offset"] for p in reply["publications"]] == [3, 4]
    assert reply["publications"][0]["data"] == {"n": 3, "pad": PAD}
    await ws.send(json.dumps({"action": "subscribe", "topic": "feed", "id": 2,
                              "since": {"offset": 1, "epoch": epoch}}))
    ack = await recv_json(ws)  # 400 bytes to replay: over the cap, so none of it
    assert (ack["type"], ack["recovered"], ack["offset"]) == ("ack", False, 5)
    await ws.close()
