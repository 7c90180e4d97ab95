"""The relay's and the cluster's counters on /metrics (hub/relay.py, hub/cluster.py),
scraped from a real server."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pubsocket import App, pubsub
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, make_settings


async def test_relay_counters_are_scraped(serve: Any) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app)
    srv = await serve(app)
    relay = app.hub.relay
    fed: list[bytes] = []
    relay.register("s1", fed.append)
    await relay.route(relay.node, "s1", b"{}")
    await relay.route(relay.node, "s1", b"{}")
    relay.receive(b"gone\n{}")  # routed here for a session this node does not hold
    status, _, body = await ahttp("GET", f"{srv.http}/metrics",
                                  headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200 and fed == [b"{}", b"{}"]
    samples = {s.name: s.value for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert samples["pubsocket_relay_fed_local_total"] == 2
    assert samples["pubsocket_relay_dropped_total"] == 1
    assert samples["pubsocket_relay_sent_total"] == 0
    assert samples["pubsocket_relay_fed_routed_total"] == 0
    assert samples["pubsocket_relay_unavailable_total"] == 0
    assert samples["pubsocket_relay_unreachable_total"] == 0


async def test_cluster_counters_are_scraped(serve: Any) -> None:
    """One process (memory broker): one node, no survey over the broker."""
    app = App(make_settings())
    pubsub("/ws/chat", app=app)
    srv = await serve(app)
    _, _, reply = await ahttp("POST", f"{srv.http}/api/channels", b"{}",
                              {"X-API-Key": API_KEY})
    assert reply == b'{"result":{"channels":{}}}'
    status, _, body = await ahttp("GET", f"{srv.http}/metrics",
                                  headers={"Authorization": f"Bearer {API_KEY}"})
    samples = {s.name: s.value for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert status == 200 and samples["pubsocket_cluster_nodes"] == 1
    assert samples["pubsocket_cluster_surveys_total"] == 0
    assert samples["pubsocket_cluster_refused_total"] == 0
