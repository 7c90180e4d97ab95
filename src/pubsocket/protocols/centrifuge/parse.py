"""Parsing of Centrifuge protocol v2 JSON commands into the shared command types.

A text frame holds one or more JSON objects separated by newlines, each
``{"id": N, "<method>": {...}}``; they are returned in order. ``{}`` (the answer to a
server ping) is no command and yields nothing. A malformed line stands in the sequence
as a `ProtocolViolation` (the codec turns the client-side ones into a 3501 close, as the
protocol does); a well-formed line after it is not parsed, since the connection ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ...brokers.base import Position
from ...codecs.base import Parsed
from ...codecs.json_commands import MAX_TOKEN_LENGTH
from ...errors import ProtocolViolation
from ...hub.recovery import ANY_EPOCH
from ...protocol import (
    MAX_HISTORY_LIMIT,
    VALID_TOPICS,
    CmdId,
    Command,
    Connect,
    ErrorCode,
    History,
    Presence,
    Publish,
    Refresh,
    Rpc,
    SubRefresh,
    Subscribe,
    Unsubscribe,
    valid_id,
    valid_topic,
)

MAX_NAME_LENGTH: Final = 255  # method, client name and version strings
_METHODS: Final = ("connect", "subscribe", "unsubscribe", "publish", "presence",
                   "presence_stats", "history", "refresh", "sub_refresh", "rpc", "send")
_METHOD_SET: Final = frozenset(_METHODS)
_MISSING: Final = object()
# SubscribeRequest.flag bits (centrifugal/protocol); the others (channel compaction)
# are offers a server may ignore.
FLAG_REJECT_UNRECOVERED: Final = 2
# A connect's `subs` (server-side subscriptions to recover) read at most: what a node
# then subscribes is capped by `Settings.max_subscriptions` (server_subs.py).
MAX_CONNECT_SUBS: Final = 1024
# SubscribeRequest.type (client.proto field 15): 0 is a stream subscription, the only
# kind pubsocket serves. The others are refused with the error Centrifugo answers on a
# namespace configured for streams: map, map clients and map users (1-3) are
# PermissionDenied, 103 (centrifugo internal/client/handler.go OnSubscribe,
# `isSubscriptionTypeAllowed`); shared poll (4) is NotAvailable, 108, on a node without
# shared poll channels (centrifuge client.go `handleSubscribe`). Any other type names
# nothing: a bad request, 107.
TYPE_REFUSALS: Final = {1: 103, 2: 103, 3: 103, 4: 108}
TYPE_UNKNOWN: Final = 107


class SubscriptionTypeRefused(ProtocolViolation):
    """A subscribe of a type pubsocket does not serve (map, shared poll): an error reply
    with Centrifuge's code `reply_code` (`TYPE_REFUSALS`); the connection stays."""

    def __init__(self, reply_code: int, cmd_id: CmdId | None) -> None:
        super().__init__(ErrorCode.FORBIDDEN, "this subscription type is not served", cmd_id)
        self.reply_code = reply_code


def count_lines(text: str) -> int:
    """The lines of a frame, each a command or a pong: at least the commands
    `parse_frame` would find (a blank line counts too). One scan in C, no parsing, so a
    frame can be charged and capped before any of its commands is parsed."""
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def parse_frame(text: str) -> list[Parsed]:
    """The commands of one text frame, in order (see the module docstring)."""
    out: list[Parsed] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            cmd = parse_command(line)
        except ProtocolViolation as exc:
            out.append(exc)
            break
        if cmd is not None:
            out.append(cmd)
    return out


def parse_command(line: str | bytes) -> Command | None:
    """One command object; None for the empty command (a pong). Raises
    `ProtocolViolation` with a fixed message (never the client's input)."""
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(ErrorCode.BAD_JSON, "command is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolViolation(ErrorCode.BAD_JSON, "command must be a JSON object")
    raw_id = msg.get("id", 0)
    if isinstance(raw_id, bool) or not isinstance(raw_id, int) or not valid_id(raw_id) \
            or raw_id < 0:
        raise ProtocolViolation(ErrorCode.BAD_ID, "id must be a positive integer")
    cmd_id: CmdId | None = raw_id or None
    # The command's keys (an id and one method, usually) looked up in the set, not every
    # method in the command: the same methods, fewer lookups.
    methods = [m for m in msg if m in _METHOD_SET]
    if not methods:
        if cmd_id is None and set(msg) <= {"id", "ping"}:
            return None  # the empty command: an answer to the server's ping
        raise ProtocolViolation(ErrorCode.BAD_ACTION, "unknown command", cmd_id)
    if len(methods) > 1:
        raise ProtocolViolation(ErrorCode.BAD_ACTION, "one method per command", cmd_id)
    method = methods[0]
    body = msg[method]
    if not isinstance(body, dict):
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "a method's request must be an object",
                                cmd_id)
    return _build(method, body, cmd_id)


def _build(method: str, body: Mapping[str, Any], cmd_id: CmdId | None) -> Command:
    if method == "connect":
        data = body.get("data", _MISSING)
        return Connect(_token(body, cmd_id, required=False),
                       None if data is _MISSING else _json(data, cmd_id),
                       _string(body, "name", cmd_id), _string(body, "version", cmd_id), cmd_id,
                       _connect_subs(body.get("subs"), cmd_id))
    if method == "refresh":
        return Refresh(_token(body, cmd_id, required=True), cmd_id)
    if method == "rpc":
        name = _string(body, "method", cmd_id)
        return Rpc(name, _json(body.get("data"), cmd_id), cmd_id)
    if method == "send":
        raise ProtocolViolation(ErrorCode.BAD_ACTION, "send is not supported", cmd_id)
    topic = body.get("channel")
    if not isinstance(topic, str) or (topic not in VALID_TOPICS and not valid_topic(topic)):
        raise ProtocolViolation(ErrorCode.INVALID_TOPIC, "unknown channel", cmd_id)
    if method == "publish":  # the common command first (only dispatch order moves)
        if "data" not in body:
            raise ProtocolViolation(ErrorCode.MISSING_DATA, "publish needs data", cmd_id)
        return Publish(topic, _json(body["data"], cmd_id), cmd_id)
    if method == "subscribe":
        kind = body.get("type", 0)
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise ProtocolViolation(ErrorCode.BAD_FIELD, "type must be an integer", cmd_id)
        if kind:
            raise SubscriptionTypeRefused(TYPE_REFUSALS.get(kind, TYPE_UNKNOWN), cmd_id)
        since = None
        if body.get("recover") is True:
            since = Position(_offset(body.get("offset", 0), cmd_id),
                             _epoch(body.get("epoch", ""), cmd_id))
        token = _token(body, cmd_id, required=False)
        flag = body.get("flag", 0)
        if isinstance(flag, bool) or not isinstance(flag, int):
            raise ProtocolViolation(ErrorCode.BAD_FIELD, "flag must be an integer", cmd_id)
        return Subscribe(topic, cmd_id, since, token or None,
                         reject_unrecovered=bool(flag & FLAG_REJECT_UNRECOVERED))
    if method == "unsubscribe":
        return Unsubscribe(topic, cmd_id)
    if method in ("presence", "presence_stats"):
        return Presence(topic, cmd_id, stats=method == "presence_stats")
    if method == "sub_refresh":
        return SubRefresh(topic, _token(body, cmd_id, required=True), cmd_id)
    return _history(topic, body, cmd_id)


def _connect_subs(raw: Any, cmd_id: CmdId | None) -> tuple[tuple[str, Position | None], ...]:
    """A connect's ``subs``: channel -> ``{recover, offset, epoch}`` (the server-side
    subscriptions a reconnecting SDK recovers). A malformed one closes (3501), as
    Centrifugo's connect does for a channel it cannot subscribe."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) > MAX_CONNECT_SUBS:
        raise ProtocolViolation(ErrorCode.BAD_FIELD,
                                f"subs must be an object of at most {MAX_CONNECT_SUBS} "
                                "channels", cmd_id)
    out: list[tuple[str, Position | None]] = []
    for topic, sub in raw.items():
        if not valid_topic(topic) or not isinstance(sub, dict):
            raise ProtocolViolation(ErrorCode.BAD_FIELD, "subs: a channel -> an object",
                                    cmd_id)
        since = None
        if sub.get("recover") is True:
            since = Position(_offset(sub.get("offset", 0), cmd_id),
                             _epoch(sub.get("epoch", ""), cmd_id))
        out.append((topic, since))
    return tuple(out)


def _history(topic: str, body: Mapping[str, Any], cmd_id: CmdId | None) -> History:
    limit = body.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "limit must be an integer", cmd_id)
    # Centrifuge: 0 asks only for the position, a negative limit for everything kept.
    limit = MAX_HISTORY_LIMIT if limit < 0 else min(limit, MAX_HISTORY_LIMIT)
    reverse = body.get("reverse", False)
    if not isinstance(reverse, bool):
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "reverse must be a boolean", cmd_id)
    since = None
    raw = body.get("since")
    if raw is not None:
        if not isinstance(raw, dict):
            raise ProtocolViolation(ErrorCode.BAD_FIELD, "since must be an object", cmd_id)
        since = Position(_offset(raw.get("offset", 0), cmd_id),
                         _epoch(raw.get("epoch", ""), cmd_id))
    # Centrifugo reads its stream from the front unless reversed: without `since`, the
    # oldest `limit` kept publications (pubsocket.v1 answers the newest).
    return History(topic, cmd_id, since, limit, reverse, oldest=since is None and not reverse)


def _offset(value: Any, cmd_id: CmdId | None) -> int:
    # uint64 in the schema: protobuf's JSON mapping may quote it.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "offset must be an integer >= 0", cmd_id)
    return value


def _epoch(value: Any, cmd_id: CmdId | None) -> str:
    """A client's epoch; an empty one means "any epoch" (Centrifuge recovers from the
    offset in whatever epoch the stream is), `ANY_EPOCH` to the hub."""
    if not isinstance(value, str) or len(value) > 64:
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "epoch must be a short string", cmd_id)
    return value or ANY_EPOCH


def _token(body: Mapping[str, Any], cmd_id: CmdId | None, *, required: bool) -> str:
    token = body.get("token", "")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or (required and not token):
        raise ProtocolViolation(ErrorCode.BAD_FIELD, "token must be a string", cmd_id)
    return token


def _string(body: Mapping[str, Any], key: str, cmd_id: CmdId | None) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH:
        raise ProtocolViolation(ErrorCode.BAD_FIELD, f"{key} must be a short string", cmd_id)
    return value


def _json(data: Any, cmd_id: CmdId | None) -> bytes:
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:  # orjson reads 1024 levels of nesting, writes ~254
        raise ProtocolViolation(ErrorCode.BAD_JSON, "data is nested too deeply",
                                cmd_id) from None
