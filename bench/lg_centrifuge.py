"""The load generator's Centrifuge-protocol subscribers (JSON protocol, as centrifuge-js
speaks it): connect + subscribe in one frame, count publication pushes, answer pings.

Frame classification differs from the seed protocol's: until a subscriber has seen its
first publication (the sentinel ``0`` the scenarios publish), every frame is parsed
(connect/subscribe replies, pings, the sentinel push). After that the hot path looks only
at the size: a push of a ~100-byte publication is at least ``CF_DATA_MIN`` bytes and
``CF_MARGIN`` more than the sentinel push was; a late sentinel push (~60 bytes, ~160 with
the publisher's info) and a ping ``{}`` (2) are smaller. A frame that carries several
newline-separated pushes (the protocol allows it) counts as that many deliveries.
"""

from __future__ import annotations

import orjson
from lg_client import TEXT, CountListener, Shared
from picows import WSFrame, WSMsgType, WSTransport

CF_PATH = "/connection/websocket"
CF_DATA_MIN = 100
# data pushes carry ~100 bytes of data where the sentinel carries 1; the margin leaves
# room for the offset's digits growing while the rest of the push (info too) is the same
CF_MARGIN = 40
PONG = b"{}"


def cf_url(plain_url: str) -> str:
    """The Centrifuge endpoint of the server whose seed endpoint is `plain_url`."""
    base, _, _ = plain_url.rpartition("/ws/")
    return base + CF_PATH


def connect_and_subscribe(channel: str, token: str | None = None) -> bytes:
    """Connect (id 1, with `token` if given) and subscribe (id 2) in one frame,
    newline-separated."""
    connect: dict[str, str] = {"name": "loadgen"}
    if token:
        connect["token"] = token
    return (orjson.dumps({"id": 1, "connect": connect}) + b"\n"
            + orjson.dumps({"id": 2, "subscribe": {"channel": channel}}))


class CfCountListener(CountListener):
    """`CountListener` for a Centrifuge subscriber; errors and disconnect pushes are
    counted in ``errors`` (a run with any is reported as failed by the scenario)."""

    __slots__ = ("errors", "floor", "single")

    def __init__(self, sh: Shared) -> None:
        super().__init__(sh)
        self.errors = 0
        # The size of one publication push, learnt from the first data frame: a push
        # carries the publisher's info when there is one, so the size is not fixed.
        self.single = 0
        # The smallest data push, set from the sentinel push's size when it arrives.
        self.floor = CF_DATA_MIN

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        size = frame.payload_size
        if self.is_ready and size >= self.floor:
            if size < 2 * self.single:
                k = 1
            else:  # the first data frame, or several pushes in one frame
                k = frame.get_payload_as_bytes().count(b"\n") + 1
                if k == 1:
                    self.single = size
            self.n += k
            sh = self.sh
            sh.received += k
            if sh.received >= sh.wake_at:
                sh.wake()
        elif frame.msg_type == TEXT:
            self._control(transport, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def _control(self, transport: WSTransport, payload: bytes) -> None:
        for line in payload.split(b"\n"):
            if line == PONG:  # the server's ping: answer, or it closes us
                transport.send(TEXT, PONG)
                continue
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.errors += 1
                continue
            if "error" in msg or "disconnect" in msg.get("push", {}):
                self.errors += 1
            elif "pub" in msg.get("push", {}) and not self.is_ready:
                self.is_ready = True
                self.floor = max(CF_DATA_MIN, len(line) + CF_MARGIN)
                self.sh.ready += 1
