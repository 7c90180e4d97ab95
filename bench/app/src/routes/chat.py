from pubsocket import pubsub

pubsub("/ws/chat")
