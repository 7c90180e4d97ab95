"""An open hub for the loss tests: /ws/chat (plain and pubsocket.v1) and the Centrifuge
protocol at /connection/websocket, unsecured (topic history comes from the environment)."""

from pubsocket import pubsub

pubsub("/ws/chat")
pubsub("/connection/websocket", protocol="centrifuge", secured=False)
