"""The Centrifuge protocol at /connection/websocket (docs/centrifuge.md), on the same hub
as /ws/chat: a centrifuge-js or centrifuge-python client sees what a seed-protocol client
publishes there, and the other way round.

History and recovery are on for every topic (the default); presence and join/leave too.
The SDKs send the connection token (our JWT) in their connect command. A browser that
cannot open a WebSocket reads the same channels from /connection/uni_sse with a plain
EventSource (docs/clients.md "Unidirectional SSE").
"""

from pubsocket.web import pubsub, uni_sse

pubsub("/connection/websocket", protocol="centrifuge", secured=True, presence=["*"])
uni_sse("/connection/uni_sse", secured=True)
