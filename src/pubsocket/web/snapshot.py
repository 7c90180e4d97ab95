"""`snapshot(app)`: every live number the app keeps, read once, for /metrics and /admin/stats.

Nothing here counts anything: it reads the hub's, the transport's and the broker's plain
counters at call time. Brokers other than Redis may lack the link counters; those read 0.
"""

from __future__ import annotations

from typing import Any, TypedDict

from .app import App


class Snapshot(TypedDict):
    """The numbers of one app at one instant (counters are totals since start)."""

    connections: int
    subscriptions: int
    topics: int
    counters: dict[str, int]
    transport: dict[str, int] | None  # None: no transport has filled TransportStats
    broker: dict[str, Any]


def snapshot(app: App) -> Snapshot:
    """Read the app's gauges and counters now (cheap: no I/O, O(topics) for the sums)."""
    hub = app.hub
    stats = hub.stats
    transport = app.transport_stats
    broker: Any = hub.broker
    return Snapshot(
        connections=app.open_connections(),
        subscriptions=hub.subscription_count,
        topics=hub.topic_count,
        counters={
            "published": stats.published, "broker_received": stats.received,
            "deliveries": stats.deliveries, "duplicates_dropped": stats.duplicates,
            "gaps": stats.gaps, "recoveries": stats.recoveries,
            "recovery_failures": stats.recovery_failures,
        },
        transport=None if transport is None else {
            "messages_in": transport.messages_in, "bytes_in": transport.bytes_in,
            "messages_out": transport.frames_out, "bytes_out": transport.bytes_out,
            "dropped": transport.dropped, "slow_consumer_closes": transport.slow_closes,
            "http_write_timeouts": transport.http_write_timeouts,
        },
        broker={
            # MemoryBroker -> "memory", RedisBroker -> "redis"; a custom one keeps its name.
            "kind": type(broker).__name__.removesuffix("Broker").lower(),
            "healthy": bool(broker.healthy),
            "reader_restarts": getattr(broker, "reader_restarts", 0),
            "reconnects": getattr(broker, "reconnects", 0),
            "publish_errors": getattr(broker, "publish_errors", 0),
            "publish_latency_seconds": getattr(broker, "last_publish_latency", 0.0),
        },
    )
