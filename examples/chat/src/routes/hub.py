"""The built-in hub at /ws/chat: the seed page's protocol, done right (docs/protocol.md).

History and recovery are on for every topic (the default); presence and join/leave
events too, so `{"action": "presence", "topic": "chatroom", "id": 1}` in a
`pubsocket.v1` client shows who is here.
"""

from pubsocket import pubsub, secured

secured()(pubsub("/ws/chat", presence=["*"]))
