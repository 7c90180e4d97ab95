"""The seed page's protocol: a delivery is exactly ``json(data)``; no acks; errors as
``{"type": "error", "code", "message", "id"?}``. Unchanged since the first release."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..brokers.base import HistoryPage, Position, Publication
from ..errors import ProtocolViolation
from ..protocol import CmdId, Command, ErrorCode, History, Publish, Subscribe, SubscribeResult
from .base import Codec, Parsed
from .json_commands import parse_json_command


def encode_error(code: ErrorCode, message: str, cmd_id: CmdId | None) -> bytes:
    """The error object both JSON codecs send."""
    body: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
    if cmd_id is not None:
        body["id"] = cmd_id
    return orjson.dumps(body)


class PlainCodec(Codec):
    """Plain mode: what the seed page's `websockets` and `websocat` clients expect."""

    name = "plain"
    extended = False  # pubsocket.v1 (a subclass) also takes since, history, presence, ...

    def parse(self, data: str | bytes) -> Sequence[Parsed]:
        try:
            return (parse_json_command(data, extended=self.extended),)
        except ProtocolViolation as exc:
            return (exc,)

    def publication(self, topic: str, pub: Publication) -> bytes:
        return pub.payload

    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        return None

    def done(self, cmd: Command) -> bytes | None:
        return None

    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        return None

    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        return None  # unreachable: plain mode has no history action

    def error(self, code: ErrorCode, message: str, cmd_id: CmdId | None) -> bytes:
        return encode_error(code, message, cmd_id)

    def gap(self, topic: str, position: Position) -> bytes | None:
        # Plain clients have no positions to resume from, and no notice exists in plain
        # mode: a loss on a topic without history (`lost`) closes them with 1012 instead.
        return None


PLAIN = PlainCodec()
