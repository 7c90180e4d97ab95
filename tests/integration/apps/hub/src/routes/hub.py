"""An open hub for integration tests (the chat example's is secured)."""

from pubsocket import get, pubsub

pubsub("/ws/chat")


@get("/publish/{topic}")
async def publish_from_route(request, response):
    await request.app.hub.publish(request.params["topic"], {"via": "route"})
    return response({"ok": True})


@get("/pid")
async def pid(request, response):
    import os

    return response({"pid": os.getpid()})
