"""The JSON pub/sub wire protocol, both directions, with no I/O (docs/protocol.md).

Inbound: one text frame holds one command ``{"action", "topic", "data"?, "id"?}``.
Outbound, plain mode (the seed page's): a delivery is exactly ``json(data)``.
Outbound, ``pubsocket.v1`` mode: deliveries are envelopes
``{"type":"message","topic":T,"data":D}`` and commands with an ``id`` are answered with
``{"type":"ack","id":I}`` or ``{"type":"error","id":I,"code":C,"message":M}``.
Errors never echo the client's input: `message` is fixed text chosen by the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from websockets.frames import Frame, Opcode

from .errors import ProtocolViolation

SUBPROTOCOL: Final = "pubsocket.v1"
TOPIC_RE: Final = re.compile(r"[A-Za-z0-9_.:@/\-]{1,255}")
MAX_ID_LENGTH: Final = 64

Action = Literal["subscribe", "unsubscribe", "publish"]
_ACTIONS: Final = frozenset({"subscribe", "unsubscribe", "publish"})
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed client command. `payload` is ``json(data)`` for publishes, else None."""

    action: Action
    topic: str
    payload: bytes | None = None
    id: str | int | None = None


def valid_topic(topic: object) -> bool:
    """True for a string of 1-255 characters from ``[A-Za-z0-9_.:@/-]``."""
    return isinstance(topic, str) and TOPIC_RE.fullmatch(topic) is not None


def parse_command(text: str | bytes) -> Command:
    """Parse one inbound message, or raise `ProtocolViolation` with a fixed code.

    A valid command `id` is recovered before later checks fail and is carried in
    `ProtocolViolation.cmd_id`, so that the error reply can be correlated.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation("bad_json", "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolViolation("bad_json", "message must be a JSON object")
    cmd_id = msg.get("id")
    if cmd_id is not None and not _valid_id(cmd_id):
        raise ProtocolViolation("bad_id", "id must be a string of at most 64 characters "
                                "or an integer")
    action = msg.get("action")
    if not isinstance(action, str) or action not in _ACTIONS:
        raise ProtocolViolation(
            "bad_action", "action must be subscribe, unsubscribe or publish", cmd_id
        )
    topic = msg.get("topic")
    if not valid_topic(topic):
        raise ProtocolViolation(
            "invalid_topic", "topic must be 1-255 characters from A-Z a-z 0-9 _ . : @ / -", cmd_id
        )
    payload = None
    if action == "publish":
        data = msg.get("data", _MISSING)
        if data is _MISSING:
            raise ProtocolViolation("missing_data", "publish needs a data field", cmd_id)
        try:
            payload = orjson.dumps(data)
        except orjson.JSONEncodeError:  # orjson reads 1024 levels of nesting, writes ~254
            raise ProtocolViolation("bad_json", "data is nested too deeply", cmd_id) from None
    return Command(action, topic, payload, cmd_id)  # type: ignore[arg-type]


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


def encode_error(code: str, message: str, cmd_id: str | int | None = None) -> bytes:
    """An error reply. `message` must be server text, never client input."""
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if cmd_id is not None:
        body["id"] = cmd_id
    return orjson.dumps(body)


def encode_ack(cmd_id: str | int) -> bytes:
    """The acknowledgement of a command that carried an id (pubsocket.v1 only)."""
    return orjson.dumps({"type": "ack", "id": cmd_id})


def encode_envelope(topic: str, payload: bytes) -> bytes:
    """A pubsocket.v1 delivery, built around the already-encoded `payload`."""
    return b'{"type":"message","topic":' + orjson.dumps(topic) + b',"data":' + payload + b"}"


def text_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client text frame carrying `payload` (framed by websockets)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame made by `text_frame` (unmasked, unfragmented, no extensions)."""
    length = frame[1] & 0x7F
    return frame[2 + (2 if length == 126 else 8 if length == 127 else 0):]
