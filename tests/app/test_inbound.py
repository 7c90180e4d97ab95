"""The transport's inbound side: what a peer can make the server hold before a handler
reads it (pull mode), and the count of a frame's commands taken before any parse."""

from __future__ import annotations

import asyncio
from typing import Any

from pubsocket import App, Websocket
from pubsocket.codecs import PLAIN, V1
from pubsocket.protocols.centrifuge import CENTRIFUGE
from pubsocket.server.websocket import INBOUND_BYTES
from tests.centrifuge.test_frames import masked, raw_upgrade
from tests.conftest import make_settings

KiB = 1024


async def test_a_handler_that_does_not_read_holds_at_most_inbound_bytes(serve: Any) -> None:
    # 40 messages of 512 KiB (under INBOUND_QUEUE's 64 messages): reading pauses once
    # the inbox holds INBOUND_BYTES, so the server holds ~1 MiB, not 20 MiB.
    app = App(make_settings())
    opened: list[Any] = []
    release = asyncio.Event()

    @app.get("/ws/idle")
    async def idle(request: Any, response: Any) -> None:
        opened.append(await Websocket(request).connection())
        await release.wait()

    srv = await serve(app)
    _, writer = await raw_upgrade(srv.port, "/ws/idle")
    try:
        message = masked(b"x" * 512 * KiB)
        for _ in range(40):
            writer.write(message)  # 20 MiB: far more than the kernel's buffers take
        await asyncio.sleep(1)
        (conn,) = opened
        held = sum(len(m) for m in conn._inbox)
        assert 0 < held <= INBOUND_BYTES + 512 * KiB, held
    finally:
        release.set()
        writer.transport.abort()


def test_a_frame_is_counted_without_parsing() -> None:
    # Centrifuge: one command per line, blank lines and pongs included, a trailing
    # newline not; the JSON protocols: one per message, whatever the data holds.
    assert CENTRIFUGE.count('{"id":1}') == 1
    assert CENTRIFUGE.count('{"id":1}\n{"id":2}\n') == 2
    assert CENTRIFUGE.count("{}\n" * 1000) == 1000
    assert CENTRIFUGE.count("not json\n\n{}") == 3
    text = '{"action":"publish","topic":"t","data":"a\\nb\\nc"}'
    assert V1.count(text) == PLAIN.count(text) == 1
