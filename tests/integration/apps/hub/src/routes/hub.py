"""An open hub for integration tests (the chat example's is secured)."""

from pubsocket import pubsub

pubsub("/ws/chat")
