"""The one exception tree of pubsocket, and the close codes it maps to.

::

    PubsocketError
    ├── ConfigError                 bad or missing settings; raised at startup
    ├── ListenError                 the server cannot bind its address (in use, no right)
    ├── HTTPError                   an HTTP refusal before any upgrade (status + JSON code)
    │   ├── Unauthorized            401
    │   │   └── TokenExpired        401 "token expired" (Centrifuge: error 109)
    │   └── RateLimited             429 with Retry-After
    ├── ConnectionClosed            the WebSocket peer left (carries code + reason)
    ├── OpError                     an operation (publish, history, presence, ...) refused
    │   │                           or failed, whichever front door asked (see below)
    │   ├── BadRequest              a field's type or range (also a ValueError)
    │   │   ├── InvalidTopic        the topic is not a valid topic name
    │   │   └── MissingData         a publish without data
    │   ├── PermissionDenied        the principal may not do this on this topic
    │   │                           (`Forbidden` is the same class)
    │   ├── NotAvailable            the feature is off for this topic (presence, history)
    │   ├── LimitExceeded           past a documented cap (subscriptions, batch size)
    │   ├── MethodNotFound          no such server API method
    │   ├── UnrecoverablePosition   history no longer holds the asked position
    │   └── Unavailable             the broker or presence store cannot serve now
    ├── ProtocolViolation           a pub/sub command that breaks the wire protocol
    │                               (carries an `ErrorCode`; never the client's input)
    └── BrokerError                 the broker cannot take a publish or a subscription
        └── BrokerUnavailable

Nothing in this tree carries client input in its message, so `str(exc)` is safe to
log. Exception text is still never sent to a client: clients get fixed codes.

`OpError` is the one vocabulary of the operations layer (docs/design.md "The seams",
Operations): the hub's socket commands and `ops.Operations` raise the same subtype for
the same refusal, and each dialect maps the type once, with `lookup` over its table:
the sockets' `ErrorCode` (`hub.operations.SOCKET`, which the Centrifuge protocol maps to
its numbers in `protocols.centrifuge.codes`), our HTTP API's status and Centrifugo's
server API codes (`ops.errors.HTTP`, `ops.errors.CENTRIFUGO`). A type's message is fixed
(a raise may give a fixed, more precise one); nothing a client sent is echoed back.
"""

from __future__ import annotations

import enum
from typing import TypeVar

_V = TypeVar("_V")


class CloseCode(enum.IntEnum):
    """WebSocket close codes pubsocket sends; docs/protocol.md says what a client should do."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    AUTH_EXPIRED = 4001
    DISCONNECTED = 4003
    SLOW_CONSUMER = 4008
    RATE_LIMITED = 4029


class ErrorCode(enum.StrEnum):
    """Every error code a client can receive (docs/protocol.md explains each)."""

    BAD_JSON = "bad_json"
    BAD_ACTION = "bad_action"
    INVALID_TOPIC = "invalid_topic"
    MISSING_DATA = "missing_data"
    BAD_ID = "bad_id"
    BAD_FIELD = "bad_field"
    SUBSCRIPTION_LIMIT = "subscription_limit"
    UNRECOVERABLE_POSITION = "unrecoverable_position"
    FORBIDDEN = "forbidden"
    PRESENCE_OFF = "presence_off"
    HISTORY_OFF = "history_off"  # a Centrifugo config's namespace keeps no history
    INVALID_TOKEN = "invalid_token"
    BROKER_UNAVAILABLE = "broker_unavailable"
    PUBLISH_RATE = "publish_rate"  # over the connection's publish bytes per second
    TOO_MANY_REQUESTS = "too_many_requests"

    @property
    def counts(self) -> bool:
        """Whether it counts toward the protocol-error limit (the server's fault doesn't)."""
        return self not in (ErrorCode.BROKER_UNAVAILABLE, ErrorCode.UNRECOVERABLE_POSITION,
                            ErrorCode.PUBLISH_RATE, ErrorCode.TOO_MANY_REQUESTS)


class PubsocketError(Exception):
    """Base of every exception pubsocket raises on purpose."""


class ConfigError(PubsocketError):
    """Settings are missing or invalid. Raised at startup, never at request time."""


class ListenError(PubsocketError):
    """The server cannot listen on its host and port (the message names both)."""


class HTTPError(PubsocketError):
    """An HTTP refusal: `status` with the JSON body ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(HTTPError):
    """No valid Bearer token: HTTP 401 before any upgrade. `kind` names the refusal in
    the refusal log (`pubsocket.log.unauthorized`, docs/security.md): ``invalid_token``,
    ``token_expired`` or ``connect_hook`` (a connection hook refused)."""

    def __init__(self, message: str = "a valid Bearer token is required",
                 kind: str = "invalid_token") -> None:
        super().__init__(401, "unauthorized", message)
        self.kind = kind


class TokenExpired(Unauthorized):
    """The token was valid but its ``exp`` has passed (HTTP 401 "token expired"; the
    Centrifuge protocol answers it with error 109, so the SDK fetches a new token)."""

    def __init__(self) -> None:
        super().__init__("token expired", "token_expired")


class RateLimited(HTTPError):
    """The client's request budget is spent: HTTP 429 with ``Retry-After`` (`retry_after`
    seconds until the next request would be accepted)."""

    def __init__(self, retry_after: float,
                 message: str = "too many requests, retry later") -> None:
        super().__init__(429, "rate_limited", message)
        self.retry_after = retry_after


class ConnectionClosed(PubsocketError):
    """The WebSocket connection is closed; `code` and `reason` are what was received or sent."""

    def __init__(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ProtocolViolation(PubsocketError):
    """A pub/sub command broke the wire protocol. `code` is one of the fixed error codes."""

    def __init__(self, code: ErrorCode, message: str, cmd_id: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.cmd_id = cmd_id


class OpError(PubsocketError):
    """An operation refused or failed; the type says which (see the module tree)."""

    message = "internal server error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message


class BadRequest(OpError, ValueError):
    """Malformed input; a ValueError too, as `Hub.publish` and `Publisher` document."""

    message = "bad request"


class InvalidTopic(BadRequest):
    message = "invalid topic: 1-255 characters from A-Z a-z 0-9 _ . : @ / # -"


class MissingData(BadRequest):
    message = "publish needs a data field"


class PermissionDenied(OpError):
    """The principal may not do this action on this topic (the `forbidden` error code)."""

    message = "not allowed on this topic"


Forbidden = PermissionDenied  # the name `Hub.publish` documented first: one class


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


def lookup(table: dict[type[OpError], _V], exc: OpError) -> _V:
    """`exc`'s entry in a dialect's `table`: its own type's, else its nearest base's
    (every table has an `OpError` entry)."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return table[OpError]


class BrokerError(PubsocketError):
    """The broker rejected or could not carry an operation."""


class BrokerUnavailable(BrokerError):
    """The broker is not reachable right now; the operation was not carried out."""
