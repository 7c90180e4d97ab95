"""The relay's counters on /metrics (hub/relay.py), scraped from a real server."""

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
