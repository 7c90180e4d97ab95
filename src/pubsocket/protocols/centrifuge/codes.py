"""Centrifuge's numbers, whatever the encoding (JSON here; Protobuf shares them): client
error codes and the mapping from the hub's `ErrorCode`, disconnect (close) codes and the
mapping from the transport's `CloseCode` (`CLOSE_CODES`, set per connection as
`Connection.close_codes`), unsubscribe push codes. centrifugal.dev "Error and disconnect
codes" is the reference; docs/centrifuge.md lists what we send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ...errors import CloseCode, ProtocolViolation
from ...protocol import ErrorCode

# Centrifuge client error codes (centrifugal.dev "Error and disconnect codes").
INTERNAL: Final = 100
UNAUTHORIZED: Final = 101
UNKNOWN_CHANNEL: Final = 102
PERMISSION_DENIED: Final = 103
METHOD_NOT_FOUND: Final = 104
LIMIT_EXCEEDED: Final = 106
BAD_REQUEST: Final = 107
NOT_AVAILABLE: Final = 108
TOKEN_EXPIRED: Final = 109
TOO_MANY_REQUESTS: Final = 111
UNRECOVERABLE_POSITION: Final = 112
MESSAGES: Final = {
    INTERNAL: "internal server error", UNAUTHORIZED: "unauthorized",
    UNKNOWN_CHANNEL: "unknown channel", PERMISSION_DENIED: "permission denied",
    METHOD_NOT_FOUND: "method not found", LIMIT_EXCEEDED: "limit exceeded",
    BAD_REQUEST: "bad request", NOT_AVAILABLE: "not available",
    TOKEN_EXPIRED: "token expired", TOO_MANY_REQUESTS: "too many requests",
    UNRECOVERABLE_POSITION: "unrecoverable position",
}
TEMPORARY: Final = frozenset({INTERNAL, TOO_MANY_REQUESTS})
ERRORS: Final = {
    ErrorCode.BAD_JSON: BAD_REQUEST, ErrorCode.BAD_ACTION: METHOD_NOT_FOUND,
    ErrorCode.INVALID_TOPIC: UNKNOWN_CHANNEL, ErrorCode.MISSING_DATA: BAD_REQUEST,
    ErrorCode.BAD_ID: BAD_REQUEST, ErrorCode.BAD_FIELD: BAD_REQUEST,
    ErrorCode.SUBSCRIPTION_LIMIT: LIMIT_EXCEEDED,
    ErrorCode.UNRECOVERABLE_POSITION: UNRECOVERABLE_POSITION,
    ErrorCode.FORBIDDEN: PERMISSION_DENIED, ErrorCode.PRESENCE_OFF: NOT_AVAILABLE,
    ErrorCode.HISTORY_OFF: NOT_AVAILABLE,
    ErrorCode.INVALID_TOKEN: UNAUTHORIZED, ErrorCode.BROKER_UNAVAILABLE: INTERNAL,
    ErrorCode.PUBLISH_RATE: TOO_MANY_REQUESTS,
    ErrorCode.TOO_MANY_REQUESTS: TOO_MANY_REQUESTS,
}
# Parse errors the protocol answers with a disconnect rather than an error reply.
FATAL: Final = frozenset({ErrorCode.BAD_JSON, ErrorCode.BAD_ACTION, ErrorCode.BAD_ID,
                           ErrorCode.BAD_FIELD, ErrorCode.MISSING_DATA})

# Centrifuge disconnect codes: 3000-3499 reconnect, 3500-3999 do not.
SHUTDOWN: Final = (3001, "shutdown")
EXPIRED: Final = (3005, "connection expired")
SLOW: Final = (3008, "slow")
NO_PONG: Final = (3012, "no pong")
TOO_MANY: Final = (3013, "too many requests")
INSUFFICIENT_STATE: Final = (3010, "insufficient state")  # reconnect and recover
INVALID_TOKEN: Final = (3500, "invalid token")
BAD_REQUEST_CLOSE: Final = (3501, "bad request")
STALE: Final = (3502, "stale")
FORCE_NO_RECONNECT: Final = (3503, "force disconnect")
CHANNEL_LIMIT: Final = (3505, "channel limit")  # more server-side subscriptions than allowed
TOO_MANYERRORS: Final = (3509, "too many errors")
CLOSE_CODES: Final[Mapping[int, tuple[int, str]]] = {
    CloseCode.GOING_AWAY: SHUTDOWN,
    CloseCode.PROTOCOL_ERROR: BAD_REQUEST_CLOSE,
    CloseCode.UNSUPPORTED_DATA: BAD_REQUEST_CLOSE,
    CloseCode.INVALID_DATA: BAD_REQUEST_CLOSE,
    CloseCode.POLICY_VIOLATION: TOO_MANYERRORS,
    CloseCode.MESSAGE_TOO_BIG: BAD_REQUEST_CLOSE,
    # The transport's one routine 1011 is the keepalive timeout; both reconnect.
    CloseCode.INTERNAL_ERROR: NO_PONG,
    CloseCode.AUTH_EXPIRED: EXPIRED,
    CloseCode.DISCONNECTED: FORCE_NO_RECONNECT,
    CloseCode.SLOW_CONSUMER: SLOW,
    CloseCode.RATE_LIMITED: TOO_MANY,
}

# Unsubscribe push codes: below 2500 final, from 2500 the SDK resubscribes.
UNSUBSCRIBE_SERVER: Final = (2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT: Final = (2500, "insufficient state")
UNSUBSCRIBE_EXPIRED: Final = (2501, "subscription expired")


def error_code(code: ErrorCode) -> int:
    """The Centrifuge error code an error reply of the hub's `code` carries."""
    return ERRORS.get(code, BAD_REQUEST)


def violation_close(exc: ProtocolViolation) -> tuple[int, str] | None:
    """The disconnect a malformed command gets (None: an error reply instead)."""
    return BAD_REQUEST_CLOSE if exc.code in FATAL else None
