"""A deliberately minimal picows pub/sub server speaking the seed protocol.

Used only by ``run.py --self-check`` as a "faster than Node" reference so we can
show the load generator is not the bottleneck. Not a product: no auth, no
backpressure policy, no fragmentation support.

Usage: python bench/picows_server.py --port 8080   (or PORT=8080 env)
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


class ChatListener(WSListener):
    __slots__ = ("hub", "subscribed", "transport")

    def __init__(self, hub: Topics) -> None:
        super().__init__()
        self.hub = hub
        self.subscribed: set[str] = set()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
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
            # Encode once; every subscriber gets the same bytes. Server frames are
            # unmasked, so picows rewrites an identical header in the headroom.
            buf = bytearray(HEADROOM)
            buf += orjson.dumps(msg.get("data"))
            for sub in subs:
                tr = sub.transport
                if tr is not None:
                    tr.send_reuse_external_bytearray(WSMsgType.TEXT, buf, HEADROOM)
        elif action == "subscribe":
            self.hub.setdefault(topic, set()).add(self)
            self.subscribed.add(topic)
        elif action == "unsubscribe":
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


async def serve(host: str, port: int) -> None:
    hub: Topics = {}

    def factory(request: WSUpgradeRequest) -> WSListener | None:
        if request.path.split(b"?", 1)[0] != b"/ws/chat":
            return None
        return ChatListener(hub)

    server = await ws_create_server(
        factory, host, port, max_frame_size=1 << 20, backlog=1024, read_buffer_init_size=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"picows-server listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
