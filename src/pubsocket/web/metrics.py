"""``GET /metrics`` in Prometheus text format, read from live counters at scrape time.

Nothing is counted on the hot path for this: the hub, the transport and the broker keep
plain integer counters, and a custom collector turns them into samples when scraped.
Each app has its own registry, so two apps in one process never mix their numbers.

Access: the API key as a Bearer token (401 without a token, 403 for a user's token),
unless ``PUBSOCKET_METRICS_PUBLIC=true`` opens it to anyone who can reach it (then keep
it off the public network: a private listener, a proxy rule).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import HTTPError
from .app import App
from .request import Request
from .response import Response, ResponseFactory
from .routing import mark_auth
from .snapshot import snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Help text per `snapshot()` key; a key without one is a KeyError at the first scrape
# (test_pubsub scrapes), never a metric shipped undocumented.
_COUNTER_DOCS = {
    "published": "Messages this node handed to the broker",
    "broker_received": "Messages the broker delivered to this node",
    "deliveries": "Frames queued to local subscribers",
    "duplicates_dropped": "Publications dropped as already delivered",
    "gaps": "Holes in a topic's stream announced to subscribers (not fillable from history)",
    "recoveries": "Subscribes with since that recovered",
    "recovery_failures": "Subscribes with since answered recovered=false",
}
_TRANSPORT_DOCS = {
    "messages_in": "WebSocket messages received",
    "bytes_in": "WebSocket bytes received",
    "messages_out": "WebSocket frames written",
    "bytes_out": "WebSocket bytes written",
    "dropped": "Frames dropped because their connection was closing",
    "slow_consumer_closes": "Connections closed with 4008",
    "http_write_timeouts": "HTTP connections aborted because their response went unread",
}
_RELAY_DOCS = {  # hub/relay.py: commands POSTed for HTTP-stream sessions
    "fed_local": "POSTed commands fed to a session on this node",
    "sent": "POSTed commands handed to the broker for the node holding their session",
    "fed_routed": "Commands other nodes routed here, fed to their session",
    "dropped": "Commands routed here for a session this node does not hold",
    "unavailable": "Commands not routed: broker down, or too many waiting for it",
    "unreachable": "Routed commands no node received (its node gone or deaf): 404",
}

_CLUSTER_DOCS = {  # hub/cluster.py: the server API's channels survey
    "surveys": "channels surveys this node ran over the broker",
    "shared": "channels requests that joined a survey already running",
    "refused": "channels requests refused by the survey bounds (error 106)",
    "incomplete": "channels surveys that timed out before every node answered",
    "answered": "Other nodes' channels surveys this node answered",
    "replies_dropped": "Survey answers not sent: too many waited for the broker",
}


class _Collector(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        snap = snapshot(self.app)
        yield _gauge("connections", "Open WebSocket connections", snap["connections"])
        yield _gauge("subscriptions", "Local (connection, topic) subscriptions",
                     snap["subscriptions"])
        yield _gauge("topics", "Topics with local subscribers", snap["topics"])
        for name, value in snap["counters"].items():
            yield _counter(name, _COUNTER_DOCS[name], value)
        for name, value in (snap["transport"] or {}).items():
            yield _counter(name, _TRANSPORT_DOCS[name], value)
        broker = snap["broker"]
        yield _gauge("broker_healthy", "1 while the broker link and reader are up",
                     1.0 if broker["healthy"] else 0.0)
        yield _counter("broker_reader_restarts", "Broker reader tasks restarted after a crash",
                       broker["reader_restarts"])
        yield _counter("broker_reconnects", "Broker reconnections", broker["reconnects"])
        yield _counter("broker_publish_errors", "Publishes the broker refused",
                       broker["publish_errors"])
        yield _gauge("broker_publish_latency_seconds", "Last broker publish round trip",
                     broker["publish_latency_seconds"])
        relay = self.app.hub.relay.stats
        for name, doc in _RELAY_DOCS.items():
            yield _counter(f"relay_{name}", doc, getattr(relay, name))
        cluster = self.app.hub.cluster
        yield _gauge("cluster_nodes", "Running nodes this node knows of, itself included",
                     cluster.known + 1)
        for name, doc in _CLUSTER_DOCS.items():
            yield _counter(f"cluster_{name}", doc, getattr(cluster.stats, name))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"pubsocket_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"pubsocket_{name}", doc, value=value)


def mount_metrics(app: App, path: str = "/metrics") -> None:
    """Serve the app's metrics at ``GET path``: to the API key only, unless the
    settings' `metrics_public` opens it (module docstring)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(app))
    public = app.settings.metrics_public

    async def metrics(request: Request, response: ResponseFactory) -> Response:
        if not public and not request.principal.is_api_key:
            raise HTTPError(403, "forbidden", "only the API key may read the metrics")
        return response(generate_latest(registry), content_type=CONTENT_TYPE)

    app.get(path)(mark_auth(metrics, "noauth" if public else "token"))
