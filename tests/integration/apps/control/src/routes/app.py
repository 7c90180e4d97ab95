"""A secured hub with presence on every topic, and routes that act on users (tests)."""

from pubsocket import post, pubsub

pubsub("/ws/chat", secured=True, presence=["*"])


@post("/kick")
async def kick(request, response):
    await request.app.hub.disconnect_user(request.body["user"])
    return response({"ok": True})


@post("/drop")
async def drop(request, response):
    await request.app.hub.unsubscribe_user(request.body["user"], request.body["topic"])
    return response({"ok": True})
