"""Parsing of the seed page's JSON commands, shared by the plain and pubsocket.v1 codecs.

One text frame holds one object ``{"action", "topic", "data"?, "id"?, ...}``. A valid
`id` is recovered before later checks fail, so the error reply can be correlated.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from ..brokers.base import Position
from ..errors import ProtocolViolation
from ..protocol import (
    MAX_HISTORY_LIMIT,
    MAX_ID_LENGTH,
    VALID_TOPICS,
    Command,
    ErrorCode,
    Heartbeat,
    History,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    valid_id,
    valid_topic,
)

_MISSING: Final = object()
_ACTIONS: Final = frozenset({"subscribe", "unsubscribe", "publish"})
_V1_ACTIONS: Final = frozenset({"history", "presence", "presence_stats", "refresh",
                                "heartbeat"})
MAX_TOKEN_LENGTH: Final = 8192
_TOPIC_RULE: Final = "topic must be 1-255 characters from A-Z a-z 0-9 _ . : @ / # -"


def parse_json_command(text: str | bytes, *, extended: bool) -> Command:
    """One command, or raise `ProtocolViolation`. `extended` (pubsocket.v1) also accepts
    ``since`` on subscribe and the ``history`` action."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(ErrorCode.BAD_JSON, "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolViolation(ErrorCode.BAD_JSON, "message must be a JSON object")
    cmd_id = msg.get("id")
    if cmd_id is not None and not valid_id(cmd_id):
        raise ProtocolViolation(ErrorCode.BAD_ID, f"id must be a string of at most "
                                f"{MAX_ID_LENGTH} characters or an integer")
    action = msg.get("action")
    if not isinstance(action, str) or (action not in _ACTIONS and not (
            extended and action in _V1_ACTIONS)):
        allowed = ("subscribe, unsubscribe, publish, history, presence, presence_stats, "
                   "refresh or heartbeat") if extended else "subscribe, unsubscribe or publish"
        raise ProtocolViolation(ErrorCode.BAD_ACTION, f"action must be {allowed}", cmd_id)
    if action == "heartbeat":
        return Heartbeat(cmd_id)
    if action == "refresh":
        token = msg.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise ProtocolViolation(ErrorCode.BAD_FIELD, "refresh needs a token string", cmd_id)
        return Refresh(token, cmd_id)
    topic = msg.get("topic")
    if not isinstance(topic, str) or (topic not in VALID_TOPICS and not valid_topic(topic)):
        raise ProtocolViolation(ErrorCode.INVALID_TOPIC, _TOPIC_RULE, cmd_id)
    if action == "publish":
        data = msg.get("data", _MISSING)
        if data is _MISSING:
            raise ProtocolViolation(ErrorCode.MISSING_DATA, "publish needs a data field", cmd_id)
        try:
            payload = orjson.dumps(data)
        except orjson.JSONEncodeError:  # orjson reads 1024 levels of nesting, writes ~254
            raise ProtocolViolation(ErrorCode.BAD_JSON, "data is nested too deeply",
                                    cmd_id) from None
        return Publish(topic, payload, cmd_id)
    if action == "unsubscribe":
        return Unsubscribe(topic, cmd_id)
    if action in ("presence", "presence_stats"):
        return Presence(topic, cmd_id, stats=action == "presence_stats")
    since = _since(msg.get("since"), cmd_id) if extended else None
    if action == "subscribe":
        return Subscribe(topic, cmd_id, since)
    limit = msg.get("limit", MAX_HISTORY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_HISTORY_LIMIT:
        raise ProtocolViolation(ErrorCode.BAD_FIELD,
                                f"limit must be an integer from 0 to {MAX_HISTORY_LIMIT}", cmd_id)
    return History(topic, cmd_id, since, limit)


def _since(value: Any, cmd_id: Any) -> Position | None:
    if value is None:
        return None
    if isinstance(value, dict):
        offset, epoch = value.get("offset"), value.get("epoch")
        if (isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset < 2**53
                and isinstance(epoch, str) and len(epoch) <= 64):
            return Position(offset, epoch)
    raise ProtocolViolation(ErrorCode.BAD_FIELD,
                            'since must be {"offset": <integer >= 0>, "epoch": <string>}', cmd_id)
