"""The attack target for `channels` surveys: the bystander's secured /ws/chat, the
server API (``POST /api/channels``, the flood's target) and ``GET /cluster/stats`` (this
node's survey counters, hub/cluster.py)."""

from pubsocket import get, pubsub, secured

secured()(pubsub("/ws/chat", presence=["*"]))


@get("/cluster/stats")
async def stats(request, response):
    cluster = request.app.hub.cluster
    counters = cluster.stats
    return response({"node": cluster.node, "nodes": len(cluster.nodes()),
                     "surveys": counters.surveys, "shared": counters.shared,
                     "refused": counters.refused, "incomplete": counters.incomplete,
                     "answered": counters.answered,
                     "replies_dropped": counters.replies_dropped})
