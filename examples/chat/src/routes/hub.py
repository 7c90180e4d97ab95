"""The built-in hub at /ws/chat: the seed page's protocol, done right (docs/protocol.md)."""

from pubsocket import pubsub, secured

secured()(pubsub("/ws/chat"))
