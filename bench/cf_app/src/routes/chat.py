"""The bench app for the Centrifuge comparison: the seed protocol and the Centrifuge
protocol on one hub (publishers use /ws/chat; subscribers either endpoint)."""

from pubsocket import pubsub

pubsub("/ws/chat")
pubsub("/connection/websocket", protocol="centrifuge")
