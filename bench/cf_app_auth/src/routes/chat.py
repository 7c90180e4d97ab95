"""The secured bench app for the Centrifuge comparison with publisher info: as
bench/cf_app, but both endpoints need a token (Bearer header on /ws/chat, the connect
command's token on /connection/websocket), so an authenticated publisher's
publications carry its identity (`from` / `pub.info`)."""

from pubsocket import pubsub, secured

secured()(pubsub("/ws/chat"))
pubsub("/connection/websocket", protocol="centrifuge", secured=True)
