"""``pubsocket.v1``: envelopes with offsets, acks with positions, recovery, history, gaps.

Deliveries: ``{"type":"message","topic":T,"offset":N,"data":D,"from":F}`` (`offset`
absent on topics without history; `from` = ``{"user":U,"client":C,"info"?:I}`` only when
a client published it). A command with an `id` is answered with ``{"type":"ack","id":I,
...}`` or an error with the same `id`; a subscribe with `since` is always answered.
docs/protocol.md is the reference.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import orjson

from ..brokers.base import HistoryPage, Position, Publication, Publisher
from ..presence.base import ClientInfo, Stats
from ..protocol import (
    CmdId,
    Command,
    Heartbeat,
    History,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    SubscribeResult,
)
from .plain import PlainCodec


def _client(client: ClientInfo) -> dict[str, Any]:
    return {"user": client.user, "info": client.info}


@functools.lru_cache(maxsize=4096)  # one entry per publishing connection seen lately
def _from(publisher: Publisher) -> bytes:
    """``,"from":{...}``: the publisher's fields, `info` spliced in raw."""
    body: dict[str, Any] = {"user": publisher.user, "client": publisher.client}
    if publisher.info:
        body["info"] = orjson.Fragment(publisher.info)
    return b',"from":' + orjson.dumps(body)


@functools.lru_cache(maxsize=1024)  # one entry per topic published to lately (<= 255 chars)
def _head(topic: str) -> bytes:
    """``{"type":"message","topic":T``: a delivery's start, the same for all of a topic's."""
    return b'{"type":"message","topic":' + orjson.dumps(topic)


def _entry(pub: Publication) -> bytes:
    """One history entry: ``{"offset":N,"data":D,"from"?:F}``."""
    tail = b"}" if pub.publisher is None else _from(pub.publisher) + b"}"
    return b'{"offset":' + str(pub.offset).encode() + b',"data":' + pub.payload + tail


def _reply(kind: str, cmd_id: CmdId | None, **fields: Any) -> bytes:
    """``{"type": kind, "id"?: cmd_id, **fields}``: the id, when there is one, comes second."""
    body: dict[str, Any] = {"type": kind}
    if cmd_id is not None:
        body["id"] = cmd_id
    body.update(fields)
    return orjson.dumps(body)


def _ack(cmd_id: CmdId | None, **fields: Any) -> bytes:
    return _reply("ack", cmd_id, **fields)


class V1Codec(PlainCodec):
    """The pubsocket.v1 subprotocol: the plain commands and errors, and more."""

    name = "pubsocket.v1"
    extended = True
    refreshable = True

    def publication(self, topic: str, pub: Publication) -> bytes:
        # Built around the already-encoded payload: no re-encoding of data.
        tail = b"}" if pub.publisher is None else _from(pub.publisher) + b"}"
        if pub.offset:
            return b'%b,"offset":%d,"data":%b%b' % (_head(topic), pub.offset, pub.payload, tail)
        return b'%b,"data":%b%b' % (_head(topic), pub.payload, tail)

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        if cmd.id is None and cmd.since is None:
            return None
        position = result.position
        fields: dict[str, Any] = {"topic": cmd.topic, "offset": position.offset,
                                  "epoch": position.epoch}
        if cmd.since is not None:
            fields["recovered"] = result.recovered
        return _ack(cmd.id, **fields)

    def done(self, cmd: Command) -> bytes | None:
        return None if cmd.id is None else _ack(cmd.id)

    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        if cmd.id is None:
            return None
        return _ack(cmd.id, offset=pub.offset) if pub.offset else _ack(cmd.id)

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        head = _reply("history", cmd.id, topic=cmd.topic, offset=page.position.offset,
                      epoch=page.position.epoch)
        pubs = b",".join(_entry(p) for p in page.publications)
        return head[:-1] + b',"publications":[' + pubs + b"]}"

    def refreshed(self, cmd: Refresh, expires_at: float | None) -> bytes | None:
        return _ack(cmd.id, expires_at=expires_at)

    def heartbeat(self, interval: float) -> bytes | None:
        return b'{"type":"ping"}'

    def heartbeat_on(self, cmd: Heartbeat, interval: float) -> bytes | None:
        # Integral seconds stay integers on the wire; 0: the server sends no pings.
        value: float = int(interval) if interval == int(interval) else interval
        return _ack(cmd.id, interval=value)

    def expiring(self, expires_at: float) -> bytes | None:
        return orjson.dumps({"type": "expiring", "expires_at": expires_at})

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        return orjson.dumps({"type": "unsubscribed", "topic": topic, "reason": reason})

    def presence(self, cmd: Presence, clients: Mapping[str, ClientInfo]) -> bytes | None:
        return _reply("presence", cmd.id, topic=cmd.topic,
                      clients={cid: _client(c) for cid, c in clients.items()})

    def presence_stats(self, cmd: Presence, stats: Stats) -> bytes | None:
        return _reply("presence_stats", cmd.id, topic=cmd.topic,
                      connections=stats.connections, users=stats.users)

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        return orjson.dumps({"type": "join", "topic": topic, **_client(client),
                             "client": client.client_id})

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        return orjson.dumps({"type": "leave", "topic": topic, **_client(client),
                             "client": client.client_id})

    def gap(self, topic: str, position: Position) -> bytes | None:
        return orjson.dumps({"type": "gap", "topic": topic, "offset": position.offset,
                             "epoch": position.epoch})


V1 = V1Codec()
