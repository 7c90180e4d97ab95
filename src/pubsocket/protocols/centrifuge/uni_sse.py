"""The unidirectional Centrifuge protocol as SSE events carry it (``/connection/uni_sse``).

A unidirectional connection receives Centrifuge ``Push`` objects unwrapped: the connect
push ``{"connect": {...}}`` first, then ``{"channel": C, "pub": {...}}`` per publication,
``{"channel": C, "subscribe": {...}}`` when a channel's subscription starts, ``{}`` as
the ping and ``{"disconnect": {...}}`` before the server ends the stream (centrifugal.dev
"Unidirectional client protocol"). The bodies are the bidirectional codec's
(`CentrifugeCodec`), unwrapped, so both stay one encoding.

A payload that moves a channel's position starts with a header the SSE framer keeps and
the stream turns into the event's ``id`` (server/sse.py): ``\\0<channel>\\0<offset>:<epoch>\\n``.
A payload starting with ``\\1\\n`` asks the stream to end after it (the client reconnects
with its ``Last-Event-ID`` and recovery fills the hole). Channels never hold ``\\0`` or a
newline (`valid_topic`), and no JSON starts with either byte.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ...brokers.base import Position, Publication
from ...protocol import CmdId, Subscribe, SubscribeResult
from .codec import CentrifugeCodec, ServerSubs, ttl_of

POSITION: Final = b"\x00"  # a header: this payload moves a channel's position
END: Final = b"\x01\n"  # a header: end the stream after this payload
INSUFFICIENT: Final = (3010, "insufficient state")  # Centrifuge's reconnecting disconnect


def position_header(topic: str, position: Position) -> bytes:
    """``\\0<topic>\\0<offset>:<epoch>\\n`` (nothing for a topic without history)."""
    if not position.epoch:
        return b""
    return (POSITION + topic.encode() + POSITION
            + f"{position.offset}:{position.epoch}\n".encode())


def disconnect(code: int, reason: str) -> bytes:
    """The disconnect push; codes below 3500 (and 4000-4499) tell the client to come back."""
    return orjson.dumps({"disconnect": {
        "code": code, "reason": reason,
        "reconnect": code < 3500 or 4000 <= code < 4500}})


def _unwrap(push: bytes) -> bytes:
    """``{"push":X}`` -> ``X``: the bidirectional push as a unidirectional one."""
    return push[8:-1]


class UniSseCodec(CentrifugeCodec):
    """`CentrifugeCodec` for a unidirectional stream (module docstring). Commands never
    come from the client: the route runs a connect and one subscribe per channel."""

    name = "centrifuge-uni-sse"
    refreshable = False  # a stream cannot refresh: it ends with 3005 and reconnects

    def server_side(self) -> UniSseCodec:
        return self  # every subscription of a stream is server-side: a gap ends it

    @property
    def replay_in_reply(self) -> bool:
        return False  # every replayed publication is its own event, with its own id

    def publication(self, topic: str, pub: Publication) -> bytes:
        body = _unwrap(super().publication(topic, pub))
        if pub.offset:
            return position_header(topic, Position(pub.offset, pub.epoch)) + body
        return body

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        position = result.position
        fields: dict[str, Any] = {}
        if position.epoch:
            fields.update(recoverable=True, positioned=True, epoch=position.epoch,
                          offset=position.offset)
        if cmd.since is not None:
            fields.update(was_recovering=True, recovered=result.recovered)
        fields.update(ttl_of(cmd.expires_at))
        if cmd.options is not None and cmd.options.data is not None:
            fields["data"] = orjson.Fragment(cmd.options.data)
        push = orjson.dumps({"channel": cmd.topic, "subscribe": fields})
        return position_header(cmd.topic, position) + push

    def connected(self, cmd_id: CmdId | None, client_id: str, version: str,
                  expires_at: float | None, ping: float,
                  subs: ServerSubs | None = None, *, session: str = "",
                  node: str = "") -> bytes | None:
        # `subs` stays empty: a stream is connected with server_subs=False.
        body: dict[str, Any] = {"client": client_id, "version": version}
        body.update(ttl_of(expires_at))
        if ping > 0:
            body["ping"] = max(1, round(ping))  # no pong: the client cannot send one
        return orjson.dumps({"connect": body})

    def gap(self, topic: str, position: Position) -> bytes | None:
        # The live stream lost publications: end the stream; the client reconnects with
        # its last event id and recovery replays the hole (or says it cannot).
        return END + disconnect(*INSUFFICIENT)

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        return _unwrap(super().unsubscribed(topic, reason) or b'{"push":{}}')

    def join(self, topic: str, client: Any) -> bytes | None:
        return _unwrap(super().join(topic, client) or b'{"push":{}}')

    def leave(self, topic: str, client: Any) -> bytes | None:
        return _unwrap(super().leave(topic, client) or b'{"push":{}}')


UNI_SSE: Final = UniSseCodec()
