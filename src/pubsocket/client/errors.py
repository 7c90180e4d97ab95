"""The client's exceptions, all under `ClientError` (itself a `PubsocketError`)::

    ClientError
     ├── AuthError        the server refused the token (HTTP 401, or closed 4001/4003 for good)
     ├── Forbidden        the ``forbidden`` error: the token may not do this on this topic
     ├── Timeout          no reply in time (also a `TimeoutError`)
     ├── CommandError     any other error reply: ``.code`` and ``.message`` (server text)
     ├── ConnectFailed    the first connect failed for another reason (unreachable, not v1)
     ├── ClientClosed     the client is closed, or the connection dropped before the reply
     ├── Unsubscribed     the server ended a subscription (``.reason``)
     └── Overflow         a subscription's queue was full: the consumer fell behind
"""

from __future__ import annotations

from ..errors import PubsocketError


class ClientError(PubsocketError):
    """Base of every error `pubsocket.client` raises."""


class AuthError(ClientError):
    """The server refused the credentials (401 at the upgrade, 4003, or 4001 for good)."""


class Forbidden(ClientError):
    """The server answered ``forbidden``: this action is not allowed on this topic."""


class Timeout(ClientError, TimeoutError):
    """A command got no reply (or no connection) within its timeout."""


class CommandError(ClientError):
    """An error reply other than ``forbidden``; `code` is one of docs/protocol.md's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectFailed(ClientError):
    """The first connection could not be made (refused, unreachable, not ``pubsocket.v1``)."""


class ClientClosed(ClientError):
    """The client is closed, or the connection dropped before the command's reply arrived
    (then the command may or may not have taken effect: it is never sent twice)."""


class Unsubscribed(ClientError):
    """The server ended the subscription (``{"type": "unsubscribed"}``); `reason` is its text."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"{topic}: {reason}")
        self.topic = topic
        self.reason = reason


class Overflow(ClientError):
    """The subscription's bounded queue filled up; it was ended rather than grow or drop."""
