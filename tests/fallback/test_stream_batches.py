"""Streams take the hub's shared per-tick batches (server/writes.py `WriteQueue`,
hub/wire.py `Batch`) as WebSockets do, on a real server read by raw HTTP clients.

A WebSocket publisher puts many publications in **one** TCP write, so the server fans
them out in one tick: every stream subscriber (pubsocket.v1 http_stream lines, Centrifuge
SSE events and http_stream lines) gets all of them, whole and in order. A subscriber
that does not read is still cut by the outbound budget, and one whose writes make no
progress is aborted by the write timeout, while the others keep receiving.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import orjson

from pubsocket import App, pubsub
from pubsocket.protocols.centrifuge.uni_sse import UNI_SSE
from pubsocket.server.http_stream import NDJSON_WIRES
from pubsocket.server.sse import SSE_WIRES
from tests.app.test_batches import RawClient
from tests.app.test_pubsub import cmd
from tests.centrifuge_js.conftest import token
from tests.conftest import make_settings
from tests.fallback.client import HttpStream, request
from tests.fallback.test_v1_fallback import open_stream

COUNT = 60  # publications in one TCP write (one tick)
STREAMS = 3  # stream subscribers of each kind


def both_app(**settings: Any) -> App:
    """pubsocket.v1 at /ws/chat and Centrifuge (with its emulation) side by side."""
    app = App(make_settings(rate_limit=0, publish_byte_rate=0, http_rate_limit=0,
                            **settings))
    pubsub("/ws/chat", app=app, secured=False)
    pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    return app


async def cf_stream(port: int, framing: str) -> tuple[HttpStream, dict[str, Any]]:
    """A Centrifuge emulated stream subscribed to ``t`` (framing "sse" or "http_stream")."""
    connect = orjson.dumps({"id": 1, "connect": {"token": token("alice")}})
    if framing == "sse":
        query = urllib.parse.urlencode({"cf_connect": connect.decode()})
        stream = await HttpStream.post(port, f"/connection/sse?{query}", method="GET")
    else:
        stream = await HttpStream.post(port, "/connection/http_stream", connect,
                                       {"Content-Type": "application/json"})
    assert stream.status == 200
    connected = (await cf_message(stream, framing))["connect"]
    status, _, _ = await request(port, "/emulation", {
        "session": connected["session"], "node": connected["node"],
        "data": orjson.dumps({"id": 2, "subscribe": {"channel": "t"}}).decode()})
    assert status == 204
    for _ in range(10):
        if (await cf_message(stream, framing)).get("id") == 2:
            return stream, connected
    raise AssertionError("no subscribe reply")


async def cf_message(stream: HttpStream, framing: str, timeout: float = 5.0) -> Any:
    """The next Centrifuge reply: one JSON line, or one SSE event (``data:`` + blank)."""
    if framing != "sse":
        return await stream.line(timeout)
    async with asyncio.timeout(timeout):
        event = await stream.reader.readuntil(b"\n\n")
    assert event.startswith(b"data: ") and event.count(b"\n") == 2, event
    return orjson.loads(event[6:])


def cmd_(action: str, topic: str, **fields: Any) -> dict[str, Any]:
    return {"action": action, "topic": topic, **fields}


async def test_one_tick_fanout_reaches_every_stream_whole_and_in_order(serve: Any) -> None:
    srv = await serve(both_app())
    v1 = [(await open_stream(srv.port, [cmd_("subscribe", "t", id=1)]))[0]
          for _ in range(STREAMS)]
    for stream in v1:
        await stream.until({"type": "ack", "id": 1})
    sse = [(await cf_stream(srv.port, "sse"))[0] for _ in range(STREAMS)]
    lines = [(await cf_stream(srv.port, "http_stream"))[0] for _ in range(STREAMS)]
    bidirectional = [w for c, w in SSE_WIRES._wires.items() if c is not UNI_SSE]
    assert bidirectional and all(w.batched for w in bidirectional)
    assert NDJSON_WIRES._wires and all(w.batched for w in NDJSON_WIRES._wires.values())
    assert not SSE_WIRES(UNI_SSE).batched  # its event ids are made per stream
    pub = await RawClient.connect(srv.port)
    try:
        before = srv.server.state.stats.frames_out
        pub.send_all(*(cmd("publish", "t", data=i) for i in range(COUNT)))
        for stream in v1:
            got = [(await stream.until({"type": "message"}))[0]["data"] for _ in range(COUNT)]
            assert got == list(range(COUNT))
        for framing, streams in (("sse", sse), ("http_stream", lines)):
            for stream in streams:
                got = [(await cf_message(stream, framing))["push"]["pub"]["data"]
                       for _ in range(COUNT)]
                assert got == list(range(COUNT)), framing
        # every delivery counted once (plus the publisher's acks, if any)
        assert srv.server.state.stats.frames_out - before >= 3 * STREAMS * COUNT
    finally:
        pub.close()
        for stream in [*v1, *sse, *lines]:
            await stream.close()


async def test_a_stream_that_does_not_read_is_cut_by_the_budget(serve: Any) -> None:
    srv = await serve(both_app(outbound_budget=64 * 1024))
    stuck, _ = await open_stream(srv.port, [cmd_("subscribe", "t", id=1)])
    await stuck.until({"type": "ack", "id": 1})
    reader, _ = await open_stream(srv.port, [cmd_("subscribe", "t", id=1)])
    await reader.until({"type": "ack", "id": 1})
    stats = srv.server.state.stats
    pub = await RawClient.connect(srv.port)
    try:
        payload = "x" * 4096
        sent = 0
        for _ in range(400):  # up to ~80 MiB unread (kernel buffers take several MiB)
            pub.send_all(*(cmd("publish", "t", data=payload) for _ in range(50)))
            sent += 50
            for _ in range(50):  # the bystander keeps reading: its stream is never cut
                await reader.until({"type": "message"})
            if stats.slow_closes:
                break
        assert stats.slow_closes == 1
        assert len(srv.server.state.streams) == 1  # the reader's stream is still open
        pub.send_all(cmd("publish", "t", data="after"))
        msg, _ = await reader.until({"type": "message", "data": "after"})
        assert msg["data"] == "after"
    finally:
        pub.close()
        await stuck.close()
        await reader.close()


async def test_a_stream_whose_writes_stall_is_aborted(serve: Any) -> None:
    """No budget: the write timeout alone aborts a stream whose buffer stops shrinking."""
    srv = await serve(both_app(outbound_budget=0, write_timeout=0.5))
    stuck, _ = await open_stream(srv.port, [cmd_("subscribe", "t", id=1)])
    await stuck.until({"type": "ack", "id": 1})
    state = srv.server.state
    pub = await RawClient.connect(srv.port)
    try:
        payload = "x" * 4096
        for _ in range(200):  # until the transport holds more than its high-water mark
            pub.send_all(*(cmd("publish", "t", data=payload) for _ in range(50)))
            await asyncio.sleep(0.01)
            (stream,) = state.streams
            if stream.backlog > 256 * 1024:
                break
        assert stream.backlog > 256 * 1024
        for _ in range(100):  # the stall timer fires after 0.5 s without progress
            if not state.streams:
                break
            await asyncio.sleep(0.05)
        assert not state.streams
        assert state.stats.slow_closes == 0
    finally:
        pub.close()
        await stuck.close()
