"""A deliberately minimal picows pub/sub server speaking the seed protocol.

Used only by ``run.py --self-check`` as a "faster than Node" reference so we can
show the load generator is not the bottleneck. Not a product: no auth, no
backpressure policy, no fragmentation support.

Usage: python bench/picows_server.py --port 8080 [--coalesce]   (or PORT=8080 env)

Default mode sends one pre-encoded frame per subscriber per publish (the same
write pattern as the Node baseline). ``--coalesce`` instead queues frames per
topic while picows is still parsing one read buffer and, at the buffer's last
frame, writes all queued frames to each subscriber in a single write. That is a
loadgen capacity probe (fewer, larger TCP segments), not a semantics reference:
ordering across *different* topics of one subscriber may differ from Node.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

HEADROOM = 14  # picows writes the frame header in front of the payload

Topics = dict[str, set["ChatListener"]]


def frame_header(n: int) -> bytes:
    """Unmasked server FIN+TEXT frame header for an ``n`` byte payload."""
    if n < 126:
        return bytes((0x81, n))
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big")
    return bytes((0x81, 127)) + n.to_bytes(8, "big")


class Pending:
    """Per-process queue of encoded frames per topic (coalesce mode only)."""

    def __init__(self, hub: Topics) -> None:
        self.hub = hub
        self.frames: dict[str, list[bytes]] = {}

    def flush(self) -> None:
        frames, self.frames = self.frames, {}
        for topic, chunks in frames.items():
            subs = self.hub.get(topic)
            if not subs:
                continue
            blob = b"".join(chunks)
            for sub in subs:
                tr = sub.transport
                if tr is not None and not tr.is_disconnected:
                    tr.underlying_transport.write(blob)


class ChatListener(WSListener):
    __slots__ = ("hub", "pending", "subscribed", "transport")

    def __init__(self, hub: Topics, pending: Pending | None) -> None:
        super().__init__()
        self.hub = hub
        self.pending = pending
        self.subscribed: set[str] = set()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.handle(transport, frame)
        if self.pending is not None and frame.last_in_buffer:
            self.pending.flush()

    def handle(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt != WSMsgType.TEXT:
            if mt == WSMsgType.CLOSE:
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            return
        try:
            msg: Any = orjson.loads(frame.get_payload_as_memoryview())
        except orjson.JSONDecodeError:
            return
        if not isinstance(msg, dict):
            return
        topic = msg.get("topic")
        if not isinstance(topic, str):
            return
        action = msg.get("action")
        if action == "publish":
            subs = self.hub.get(topic)
            if not subs:
                return
            if self.pending is not None:
                payload = orjson.dumps(msg.get("data"))
                q = self.pending.frames.setdefault(topic, [])
                q.append(frame_header(len(payload)))
                q.append(payload)
                return
            # Encode once; every subscriber gets the same bytes. Server frames are
            # unmasked, so picows rewrites an identical header in the headroom.
            buf = bytearray(HEADROOM)
            buf += orjson.dumps(msg.get("data"))
            for sub in subs:
                tr = sub.transport
                if tr is not None:
                    tr.send_reuse_external_bytearray(WSMsgType.TEXT, buf, HEADROOM)
        elif action == "subscribe":
            if self.pending is not None:
                self.pending.flush()
            self.hub.setdefault(topic, set()).add(self)
            self.subscribed.add(topic)
        elif action == "unsubscribe":
            if self.pending is not None:
                self.pending.flush()
            self._drop(topic)

    def _drop(self, topic: str) -> None:
        subs = self.hub.get(topic)
        if subs is not None:
            subs.discard(self)
            if not subs:
                del self.hub[topic]
        self.subscribed.discard(topic)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for topic in list(self.subscribed):
            self._drop(topic)
        self.transport = None


async def serve(host: str, port: int, coalesce: bool) -> None:
    hub: Topics = {}
    pending = Pending(hub) if coalesce else None

    def factory(request: WSUpgradeRequest) -> WSListener | None:
        if request.path.split(b"?", 1)[0] != b"/ws/chat":
            return None
        return ChatListener(hub, pending)

    server = await ws_create_server(
        factory, host, port, max_frame_size=1 << 20, backlog=1024, read_buffer_init_size=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mode = "coalesce" if coalesce else "per-frame"
    print(f"picows-server ({mode}) listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    ap.add_argument("--coalesce", action="store_true", help="loadgen capacity probe mode")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.coalesce))
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.coalesce))


if __name__ == "__main__":
    main()
