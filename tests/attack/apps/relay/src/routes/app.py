"""The attack target for routed commands: the bystander's secured /ws/chat, plus an
unthrottled ``POST /relay`` (no token, so no HTTP rate limit: the relay's own bounds
are all that stands) and ``GET /relay/stats`` (this node's id and relay counters)."""

from pubsocket import get, noauth, post, pubsub, secured
from pubsocket.hub.relay import RouteResult

secured()(pubsub("/ws/chat", presence=["*"]))

STATUS = {RouteResult.LOCAL_FED: 200, RouteResult.SENT: 200,
          RouteResult.UNKNOWN_SESSION: 404, RouteResult.TOO_LARGE: 413,
          RouteResult.UNAVAILABLE: 503}


@post("/relay")
@noauth()
async def route(request, response):
    body = request.body
    result = await request.app.hub.relay.route(body["node"], body["session"],
                                               body["data"].encode())
    return response({"result": result.value}, STATUS[result])


@get("/relay/stats")
async def stats(request, response):
    relay = request.app.hub.relay
    return response({"node": relay.node, "sent": relay.stats.sent,
                     "dropped": relay.stats.dropped, "unavailable": relay.stats.unavailable})
