"""The asyncio Python client for the ``pubsocket.v1`` protocol (docs/clients.md)::

    async with pubsocket.client.connect("ws://127.0.0.1:7145/ws/chat", token=get_token) as c:
        sub = await c.subscribe("chat:lobby")
        await c.publish("chat:lobby", {"text": "hi"})
        async for event in sub:          # Message(topic, data, offset) | Gap(...)
            ...                          # (+ Join | Leave with presence_events=True)
            ...
"""

from .backoff import Backoff, ExponentialBackoff
from .connection import Client, State, connect
from .dial import Token
from .errors import (
    AuthError,
    ClientClosed,
    ClientError,
    CommandError,
    ConnectFailed,
    Forbidden,
    Overflow,
    Timeout,
    Unsubscribed,
)
from .results import HistoryPage, Member, PresenceStats
from .subscription import (
    Delivery,
    Event,
    Gap,
    Join,
    Leave,
    Message,
    PresenceEvent,
    Sender,
    Subscription,
)

__all__ = [
    "AuthError", "Backoff", "Client", "ClientClosed", "ClientError", "CommandError",
    "ConnectFailed", "Delivery", "Event", "ExponentialBackoff", "Forbidden", "Gap",
    "HistoryPage", "Join", "Leave", "Member", "Message", "Overflow", "PresenceEvent",
    "PresenceStats", "Sender", "State", "Subscription", "Timeout",
    "Token", "Unsubscribed", "connect",
]
