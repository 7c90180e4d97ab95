"""History and recovery replies within their caps, the backlog rule, and who may read
history or see join/leave (issue 15): sessions over a real hub and memory broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pubsocket import Hub, Settings
from pubsocket.auth import Authenticator, Principal
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import V1
from pubsocket.hub.session import Session
from tests.conftest import API_KEY, SECRET
from tests.unit.test_session import MemoryPeer, pub, sub

PAD = "x" * 90  # a publication of {"p": PAD} is 100 bytes of JSON


async def make_hub(**settings: Any) -> Hub:
    hub = Hub(Settings(**settings), MemoryBroker())
    await hub.start()
    return hub


@pytest.fixture
async def capped() -> AsyncIterator[Hub]:
    """A hub whose history pages hold at most 250 bytes (two of our publications)."""
    hub = await make_hub(history_reply_bytes=250)
    yield hub
    await hub.close()


async def run(hub: Hub, peer: MemoryPeer, principal: Principal | None = None) -> Session:
    session = Session(hub, peer, hub.settings, codec=V1, principal=principal)
    peer.hang_up()
    await asyncio.wait_for(session.run(), 3)
    return session


async def fill(hub: Hub, topic: str, n: int) -> None:
    for i in range(n):
        await hub.publish(topic, {"p": PAD[:90 - len(str(i))] + str(i)})


def history(topic: str, **extra: Any) -> dict[str, Any]:
    return {"action": "history", "topic": topic, **extra}


def offsets(reply: dict[str, Any]) -> list[int]:
    return [p["offset"] for p in reply["publications"]]


# -- pages -------------------------------------------------------------------------------
async def test_a_page_stops_at_the_byte_cap_and_the_client_continues_with_since(
        capped: Hub) -> None:
    await fill(capped, "t", 5)
    peer = MemoryPeer()
    peer.send(history("t", id=1), history("t", id=2, since={"offset": 2, "epoch": "?"}))
    await run(capped, peer)
    first = peer.received[0]
    assert first["type"] == "history" and offsets(first) == [1, 2]
    assert first["offset"] == 5  # the position says more is kept after the page
    epoch = capped.broker.history_nowait("t", None, 0)
    assert epoch is not None
    peer = MemoryPeer()
    pages = []
    since = 0
    for _ in range(5):  # bounded: the client pages until it reaches the position
        peer.send(history("t", id=1, since={"offset": since, "epoch": epoch.position.epoch}))
        await run(capped, peer)
        page = peer.received[-1]
        assert page["type"] == "history", page
        pages.append(offsets(page))
        since = pages[-1][-1] if pages[-1] else since
        if since == page["offset"]:
            break
    assert pages == [[1, 2], [3, 4], [5]]


async def test_a_page_holds_at_most_history_reply_limit_publications() -> None:
    hub = await make_hub(history_reply_limit=3)
    try:
        await fill(hub, "t", 10)
        peer = MemoryPeer()
        peer.send(history("t", id=1, limit=100))
        await run(hub, peer)
        assert offsets(peer.received[0]) == [8, 9, 10]  # the newest three
    finally:
        await hub.close()


async def test_a_publication_larger_than_the_cap_still_comes_alone(capped: Hub) -> None:
    await capped.publish("t", {"p": "y" * 1000})
    await fill(capped, "t", 1)
    peer = MemoryPeer()
    peer.send(history("t", id=1))
    await run(capped, peer)
    assert offsets(peer.received[0]) == [1]


# -- the backlog rule --------------------------------------------------------------------
async def test_history_and_recovery_wait_for_the_backlog_to_drain(capped: Hub) -> None:
    await fill(capped, "t", 3)
    since = await since_of(capped, "t", 1)
    peer = MemoryPeer()
    peer.backlog = 300_000  # over the default reply_backlog (256 KiB)
    peer.send(history("t", id=1), sub("t", id=2, since=since))
    session = Session(capped, peer, capped.settings, codec=V1)
    task = asyncio.create_task(session.run())
    await asyncio.sleep(0.1)
    assert peer.frames == []  # nothing built while the client has not read
    peer.backlog = 1000  # it read
    for _ in range(100):  # bounded: 1 s
        if len(peer.received) >= 3:
            break
        await asyncio.sleep(0.01)
    peer.hang_up()
    await asyncio.wait_for(task, 3)
    assert peer.received[0]["type"] == "history" and offsets(peer.received[0]) == [1, 2]
    assert peer.received[1]["recovered"] is True
    assert [m["offset"] for m in peer.received[2:]] == [2, 3]


async def test_a_client_that_does_not_read_is_refused_too_many_requests() -> None:
    hub = await make_hub(write_timeout=0.2)
    try:
        await fill(hub, "t", 3)
        peer = MemoryPeer()
        peer.backlog = 300_000
        peer.send(history("t", id=1), sub("t", id=2, since=await since_of(hub, "t", 1)),
                  sub("u", id=3))
        session = await run(hub, peer)
        refused = {"type": "error", "code": "too_many_requests",
                   "message": "too many replies waiting to be read; read them and retry"}
        assert peer.received == [
            {**refused, "id": 1}, {**refused, "id": 2},
            # A subscribe without since is not held back.
            {"type": "ack", "id": 3, "topic": "u", "offset": 0, "epoch": "E"}]
        assert session.errors == 0  # a temporary refusal, not a protocol error
    finally:
        await hub.close()


async def since_of(hub: Hub, topic: str, offset: int) -> dict[str, Any]:
    page = await hub.history(topic, None, 0)
    return {"offset": offset, "epoch": page.position.epoch}


# -- recovery ----------------------------------------------------------------------------

async def test_recovery_past_the_byte_cap_is_not_partial(capped: Hub) -> None:
    await fill(capped, "t", 4)
    capped.subscribe_nowait(MemoryPeer(), "t")  # keeps the topic positioned in the hub
    peer = MemoryPeer()  # 200 bytes to replay: within the cap
    peer.send(sub("t", id=1, since=await since_of(capped, "t", 2)))
    await run(capped, peer)
    assert peer.received[0]["recovered"] is True
    assert [m["offset"] for m in peer.received[1:]] == [3, 4]
    peer = MemoryPeer()  # 300 bytes: over it
    peer.send(sub("t", id=1, since=await since_of(capped, "t", 1)), pub("t", 1))
    await run(capped, peer)
    assert peer.received[0]["recovered"] is False and peer.received[0]["offset"] == 4
    assert [m["type"] for m in peer.received[1:]] == ["message"]  # live only, no replay
    assert peer.received[1]["offset"] == 5
    assert capped.stats.recovery_failures == 1


async def test_recovery_past_the_count_cap_is_not_partial() -> None:
    hub = await make_hub(history_reply_limit=2)
    try:
        await fill(hub, "t", 4)
        hub.subscribe_nowait(MemoryPeer(), "t")
        peer = MemoryPeer()
        peer.send(sub("t", id=1, since=await since_of(hub, "t", 1)))
        await run(hub, peer)
        assert peer.received[0]["recovered"] is False
        assert len(peer.received) == 1
    finally:
        await hub.close()


# -- permissions -------------------------------------------------------------------------
def reader(who: str = "mallory", **topics: list[str]) -> Principal:
    return Principal.from_claims({"sub": who, "topics": topics})


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = await make_hub()
    yield hub
    await hub.close()


async def test_since_without_the_history_permission_replays_nothing(hub: Hub) -> None:
    await fill(hub, "t", 2)
    hub.subscribe_nowait(MemoryPeer(), "t")
    since = await since_of(hub, "t", 0)
    peer = MemoryPeer()
    peer.send(sub("t", id=1, since=since), pub("t", 1), history("t", id=2))
    await run(hub, peer, reader(subscribe=["*"], publish=["*"]))
    ack, live, refused = peer.received
    assert ack["type"] == "ack" and ack["recovered"] is False and ack["offset"] == 2
    assert live["type"] == "message" and live["offset"] == 3  # subscribed, live only
    assert refused["code"] == "forbidden"
    peer = MemoryPeer()  # with the permission, the same subscribe replays
    peer.send(sub("t", id=1, since=since))
    await run(hub, peer, reader(subscribe=["*"], history=["t"]))
    assert peer.received[0]["recovered"] is True and len(peer.received) == 4


async def test_join_and_leave_go_only_to_subscribers_allowed_presence() -> None:
    hub = await make_hub(presence=("room:*",))
    try:
        allowed, denied, newcomer = MemoryPeer(), MemoryPeer(), MemoryPeer()
        sessions = [Session(hub, p, hub.settings, codec=V1, principal=who) for p, who in (
            (allowed, reader(subscribe=["*"], presence=["room:*"])),
            (denied, reader("bob", subscribe=["*"])))]
        for session, peer in zip(sessions, (allowed, denied), strict=True):
            session.on_message(json.dumps(sub("room:1", id=1)))  # push mode: stays open
            for _ in range(100):  # bounded: 1 s
                if peer.frames:
                    break
                await asyncio.sleep(0.01)
        newcomer_principal = Principal.from_claims({"sub": "carol", "info": {"secret": 1}})
        session = Session(hub, newcomer, hub.settings, codec=V1, principal=newcomer_principal)
        newcomer.send(sub("room:1", id=1))
        newcomer.hang_up()
        await asyncio.wait_for(session.run(), 3)
        for _ in range(100):  # bounded: the join and leave pushes travel the broker
            if sum(m.get("type") == "leave" for m in allowed.received) >= 1:
                break
            await asyncio.sleep(0.01)
        kinds = [(m["type"], m.get("user")) for m in allowed.received[1:]]
        assert kinds == [("join", "mallory"), ("join", "bob"), ("join", "carol"),
                         ("leave", "carol")]
        assert next(m for m in allowed.received if m.get("type") == "join"
                and m["user"] == "carol")["info"] == {"secret": 1}
        assert [m["type"] for m in denied.received] == ["ack"]  # no join, no leave
    finally:
        await hub.close()


async def test_a_refresh_without_presence_stops_join_and_leave() -> None:
    hub = await make_hub(presence=("room:*",))
    auth = Authenticator(API_KEY, SECRET)
    claims: dict[str, Any] = {"topics": {"subscribe": ["*"], "presence": ["*"]}}
    peer = MemoryPeer()
    session = Session(hub, peer, hub.settings, codec=V1, authenticator=auth,
                      principal=auth.principal_of(auth.issue("alice", 60, claims)))

    async def until(predicate: Any) -> None:
        for _ in range(100):  # bounded: 1 s
            if predicate():
                return
            await asyncio.sleep(0.01)

    async def visit(who: str) -> None:
        guest = MemoryPeer()
        guest.send(sub("room:1", id=1))
        guest.hang_up()
        await asyncio.wait_for(Session(hub, guest, hub.settings, codec=V1, principal=(
            Principal.from_claims({"sub": who}))).run(), 3)
        await until(lambda: any(m.get("type") == "leave" and m["user"] == who
                                for m in peer.received))

    try:
        session.on_message(json.dumps(sub("room:1", id=1)))
        await visit("carol")  # allowed presence: sees carol come and go
        claims["topics"] = {"subscribe": ["*"]}
        session.on_message(json.dumps({"action": "refresh", "id": 2,
                                       "token": auth.issue("alice", 60, claims)}))
        await until(lambda: any(m.get("id") == 2 for m in peer.received))
        await visit("dave")  # the refreshed token has no presence: nothing of dave
        seen = [(m["type"], m["user"]) for m in peer.received
                if m.get("type") in ("join", "leave")]
        assert seen == [("join", "alice"), ("join", "carol"), ("leave", "carol")]
        assert session.topics == {"room:1"}  # still subscribed
    finally:
        session.on_close()
        await hub.close()


async def test_history_replies_are_held_to_the_byte_rate() -> None:
    hub = await make_hub(history_reply_rate=1000)  # bytes/s, a second's worth saved
    try:
        await fill(hub, "t", 5)  # a page of all five is 500 bytes
        peer = MemoryPeer()
        peer.send(*(history("t", id=n) for n in range(4)))
        session = Session(hub, peer, hub.settings, codec=V1)
        started = asyncio.get_running_loop().time()
        task = asyncio.create_task(session.run())
        arrived: list[float] = []
        for _ in range(200):  # bounded: 2 s
            while len(arrived) < len(peer.frames):
                arrived.append(asyncio.get_running_loop().time() - started)
            if len(arrived) == 4:
                break
            await asyncio.sleep(0.005)
        peer.hang_up()
        await asyncio.wait_for(task, 3)
        assert [offsets(m) for m in peer.received] == [[1, 2, 3, 4, 5]] * 4
        # 1000 saved: two pages at once, a third takes the balance below zero, and the
        # fourth waits until 500 bytes are earned back.
        assert arrived[2] < 0.1 and arrived[3] >= 0.4, arrived
    finally:
        await hub.close()


def test_the_reply_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({
        "PUBSOCKET_HISTORY_REPLY_LIMIT": "50", "PUBSOCKET_HISTORY_REPLY_BYTES": "65536",
        "PUBSOCKET_REPLY_BACKLOG": "0", "PUBSOCKET_HISTORY_REPLY_RATE": "1048576"},
        env_file=None)
    assert (settings.history_reply_limit, settings.history_reply_bytes,
            settings.reply_backlog, settings.history_reply_rate) == (50, 65536, 0, 1048576)
    defaults = Settings()
    assert (defaults.history_reply_limit, defaults.history_reply_bytes,
            defaults.reply_backlog, defaults.history_reply_rate) == (
        1000, 512 * 1024, 256 * 1024, 4 * 1024 * 1024)
