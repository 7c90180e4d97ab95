"""``GET /metrics`` in Prometheus text format, read from live counters at scrape time.

Nothing is counted on the hot path for this: the hub, the transport and the broker keep
plain integer counters, and a custom collector turns them into samples when scraped.
Each app has its own registry, so two apps in one process never mix their numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .app import App
from .request import Request
from .response import Response, ResponseFactory
from .stats import TransportStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Collector(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        hub = self.app.hub
        yield _gauge("connections", "Open WebSocket connections", self.app.open_connections())
        yield _gauge("subscriptions", "Local (connection, topic) subscriptions",
                     hub.subscription_count)
        yield _gauge("topics", "Topics with local subscribers", hub.topic_count)
        yield _counter("published", "Messages this node handed to the broker",
                       hub.stats.published)
        yield _counter("broker_received", "Messages the broker delivered to this node",
                       hub.stats.received)
        yield _counter("deliveries", "Frames queued to local subscribers", hub.stats.deliveries)
        yield _counter("duplicates_dropped", "Publications dropped as already delivered",
                       hub.stats.duplicates)
        yield _counter("gaps", "Holes in a topic's stream announced to subscribers (not "
                       "fillable from history)", hub.stats.gaps)
        yield _counter("recoveries", "Subscribes with since that recovered", hub.stats.recoveries)
        yield _counter("recovery_failures", "Subscribes with since answered recovered=false",
                       hub.stats.recovery_failures)
        stats: TransportStats | None = self.app.transport_stats
        if stats is not None:
            yield _counter("messages_in", "WebSocket messages received", stats.messages_in)
            yield _counter("bytes_in", "WebSocket bytes received", stats.bytes_in)
            yield _counter("messages_out", "WebSocket frames written", stats.frames_out)
            yield _counter("bytes_out", "WebSocket bytes written", stats.bytes_out)
            yield _counter("dropped", "Frames dropped because their connection was closing",
                           stats.dropped)
            yield _counter("slow_consumer_closes", "Connections closed with 4008",
                           stats.slow_closes)
        broker: Any = hub.broker
        yield _gauge("broker_healthy", "1 while the broker link and reader are up",
                     1.0 if broker.healthy else 0.0)
        yield _counter("broker_reader_restarts", "Broker reader tasks restarted after a crash",
                       getattr(broker, "reader_restarts", 0))
        yield _counter("broker_reconnects", "Broker reconnections",
                       getattr(broker, "reconnects", 0))
        yield _counter("broker_publish_errors", "Publishes the broker refused",
                       getattr(broker, "publish_errors", 0))
        yield _gauge("broker_publish_latency_seconds", "Last broker publish round trip",
                     getattr(broker, "last_publish_latency", 0.0))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"pubsocket_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"pubsocket_{name}", doc, value=value)


def mount_metrics(app: App, path: str = "/metrics") -> None:
    """Serve the app's metrics at ``GET path`` (open, like every GET unless secured)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(app))

    async def metrics(request: Request, response: ResponseFactory) -> Response:
        return response(generate_latest(registry), content_type=CONTENT_TYPE)

    app.get(path)(metrics)
