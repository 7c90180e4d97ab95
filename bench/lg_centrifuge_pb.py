"""The load generator's Centrifuge Protobuf subscribers (as centrifuge-js's protobuf build
speaks it, asked for with ``?cf_protocol=protobuf``): connect + subscribe in one binary
frame, count publication pushes, answer pings.

Frames are classified as in `lg_centrifuge`: until the first publication push (the
sentinel ``0``) every frame is decoded (replies, the ping ``b"\\x00"``, the sentinel
push); after it, a frame of at least the sentinel push's size plus `CF_MARGIN` (and
`CF_DATA_MIN`) is a data push, and one of twice a single push's size is walked for the
several length-prefixed pushes it holds.
"""

from __future__ import annotations

from lg_centrifuge import CF_DATA_MIN, CF_MARGIN
from lg_client import CountListener, Shared
from picows import WSFrame, WSMsgType, WSTransport

from pubsocket.protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb
from pubsocket.protocols.centrifuge.protobuf_parse import count_commands, read_varint, varint

BINARY = WSMsgType.BINARY
PING = b"\x00"  # the server's ping (an empty Reply) and our pong (an empty Command)
QUERY = "?cf_protocol=protobuf"


def connect_and_subscribe(channel: str, token: str | None = None) -> bytes:
    """Connect (id 1, with `token` if given) and subscribe (id 2) in one binary frame."""
    cmds = [pb.Command(id=1, connect=pb.ConnectRequest(name="loadgen", token=token or "")),
            pb.Command(id=2, subscribe=pb.SubscribeRequest(channel=channel))]
    out = b""
    for cmd in cmds:
        body = cmd.SerializeToString()
        out += varint(len(body)) + body
    return out


class PbCountListener(CountListener):
    """`CountListener` for a Centrifuge Protobuf subscriber; error replies and disconnect
    pushes are counted in ``errors``."""

    __slots__ = ("errors", "floor", "single")

    def __init__(self, sh: Shared) -> None:
        super().__init__(sh)
        self.errors = 0
        self.single = 0
        self.floor = CF_DATA_MIN

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        size = frame.payload_size
        if self.is_ready and size >= self.floor:
            if size < 2 * self.single:
                k = 1
            else:  # the first data frame, or several pushes in one frame
                k = count_commands(frame.get_payload_as_bytes())
                if k == 1:
                    self.single = size
            self.n += k
            sh = self.sh
            sh.received += k
            if sh.received >= sh.wake_at:
                sh.wake()
        elif frame.msg_type == BINARY:
            self._control(transport, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
        else:
            self.errors += 1  # a text frame: not this protocol

    def _control(self, transport: WSTransport, payload: bytes) -> None:
        pos = 0
        while pos < len(payload):
            length, start = read_varint(payload, pos)
            if length < 0:
                self.errors += 1
                return
            pos = start + length
            if length == 0:  # the server's ping: answer, or it closes us
                transport.send(BINARY, PING)
                continue
            reply = pb.Reply.FromString(payload[start:pos])
            if reply.HasField("error") or reply.push.HasField("disconnect"):
                self.errors += 1
            elif reply.push.HasField("pub") and not self.is_ready:
                self.is_ready = True
                self.floor = max(CF_DATA_MIN, length + CF_MARGIN)
                self.sh.ready += 1
