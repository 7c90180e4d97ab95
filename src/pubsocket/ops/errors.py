"""The two HTTP dialects' tables: what each operation failure (`errors.OpError`, one
type per failure; the tree is drawn in errors.py) answers.

`HTTP` gives our own HTTP API's status and `ErrorCode`; `CENTRIFUGO` gives Centrifugo's
numeric error code (its server API answers HTTP 200 with ``{"error": {code, message}}``).
The socket commands' table is `hub.operations.SOCKET` (the hub cannot import this
layer). Messages are fixed per type: nothing a client sent is echoed back.
"""

from __future__ import annotations

from ..errors import (
    BadRequest,
    ErrorCode,
    InvalidTopic,
    LimitExceeded,
    MethodNotFound,
    MissingData,
    NotAvailable,
    OpError,
    PermissionDenied,
    Unavailable,
    UnrecoverablePosition,
    lookup,
)

# The failure types are errors.py's (import them from there); `lookup` is kept here too,
# next to the tables it reads.
__all__ = ["CENTRIFUGO", "CENTRIFUGO_MESSAGES", "HTTP", "lookup"]

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

