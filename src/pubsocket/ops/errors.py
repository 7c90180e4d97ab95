"""The operations' failures: one exception type per failure, and the two tables that
map each to what a front door answers.

::

    OpError
    ├── BadRequest                 the request is malformed (a field's type or range)
    │   ├── InvalidTopic           the topic is not a valid topic name
    │   └── MissingData            a publish without data
    ├── PermissionDenied           the principal may not do this on this topic
    ├── NotAvailable               the feature is off for this topic (presence, history)
    ├── LimitExceeded              past a documented cap (batch size, broadcast topics)
    ├── MethodNotFound             no such server API method
    ├── UnrecoverablePosition      history no longer holds the asked position
    └── Unavailable                the broker or presence store cannot serve now

`HTTP` gives our own HTTP API's status and `ErrorCode`; `CENTRIFUGO` gives Centrifugo's
numeric error code (its server API answers HTTP 200 with ``{"error": {code, message}}``).
Messages are fixed per type: nothing a client sent is echoed back.
"""

from __future__ import annotations

from typing import TypeVar

from ..errors import ErrorCode, PubsocketError

_V = TypeVar("_V")


class OpError(PubsocketError):
    """An operation refused or failed; the type says which (see the module tree)."""

    message = "internal server error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message


class BadRequest(OpError):
    message = "bad request"


class InvalidTopic(BadRequest):
    message = "topic must be 1-255 characters from A-Z a-z 0-9 _ . : @ / # -"


class MissingData(BadRequest):
    message = "publish needs a data field"


class PermissionDenied(OpError):
    message = "not allowed on this topic"


class NotAvailable(OpError):
    message = "not available for this topic"


class LimitExceeded(OpError):
    message = "limit exceeded"


class MethodNotFound(OpError):
    message = "method not found"


class UnrecoverablePosition(OpError):
    message = "history no longer holds that position; read it without since"


class Unavailable(OpError):
    message = "the message broker is unavailable, retry later"


# Our HTTP API: status and error code of each failure (docs/protocol.md "Errors").
HTTP: dict[type[OpError], tuple[int, ErrorCode | str]] = {
    OpError: (500, "internal_error"),
    BadRequest: (400, ErrorCode.BAD_FIELD),
    InvalidTopic: (400, ErrorCode.INVALID_TOPIC),
    MissingData: (400, ErrorCode.MISSING_DATA),
    PermissionDenied: (403, ErrorCode.FORBIDDEN),
    NotAvailable: (404, ErrorCode.PRESENCE_OFF),
    LimitExceeded: (413, "limit_exceeded"),
    MethodNotFound: (404, "not_found"),
    UnrecoverablePosition: (409, ErrorCode.UNRECOVERABLE_POSITION),
    Unavailable: (503, ErrorCode.BROKER_UNAVAILABLE),
}

# Centrifugo's server API error codes (docs/centrifuge.md "Server API").
CENTRIFUGO: dict[type[OpError], int] = {
    OpError: 100,  # internal
    PermissionDenied: 103,
    MethodNotFound: 104,
    LimitExceeded: 106,
    BadRequest: 107,
    NotAvailable: 108,
    UnrecoverablePosition: 112,
    Unavailable: 100,  # Centrifugo answers a broker failure as internal
}
CENTRIFUGO_MESSAGES = {100: "internal server error", 101: "unauthorized",
                       103: "permission denied", 104: "method not found",
                       106: "limit exceeded", 107: "bad request", 108: "not available",
                       112: "unrecoverable position"}


def lookup(table: dict[type[OpError], _V], exc: OpError) -> _V:
    """`exc`'s entry in `table`: its own type's, else its nearest base's."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return table[OpError]
