"""A `channels` flood (hub/cluster.py): two real servers on a real Redis. Node B gets
``POST /api/channels`` with the API key as fast as 4 pipelined connections can send, the
API key's HTTP rate limit lifted so the survey's own bounds are all that stands. Each
request would be one survey of every node; B runs at most `cluster_survey_rate` a
second (the others share the running one or are refused with error 106), so node A,
which answers them, sees a bounded trickle: its bystander stays fast and its RSS flat,
and so does B's RSS.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.request
from typing import Any

from tests.attack.harness import MiB, Server, attack_server, env_for_redis, measure
from tests.attack.test_http import flood
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT

APP = ROOT / "tests/attack/apps/cluster"
SECONDS = 5.0
RATE = 10  # the default cluster_survey_rate: surveys a node starts per second


def cluster_stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http}/cluster/stats", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def post_channels() -> bytes:
    body = b'{"pattern": "room:*"}'
    return (f"POST /api/channels HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def test_a_channels_flood_costs_the_other_nodes_little(redis_url: str) -> None:
    env = {**env_for_redis(redis_url), "PUBSOCKET_HTTP_RATE_LIMIT": "1000000",
           "PUBSOCKET_HTTP_RATE_BURST": "1000000"}
    statuses: collections.Counter[int] = collections.Counter()
    async with attack_server(APP, **env) as a, attack_server(APP, **env) as b:
        async with asyncio.timeout(10):  # each knows the other
            while (await asyncio.to_thread(cluster_stats, b))["nodes"] < 2:
                await asyncio.sleep(0.05)
        b_before = b.rss()
        started = time.monotonic()

        async def attack(server: Server, stop: asyncio.Event) -> str:
            await flood(b, stop, post_channels(), SECONDS, statuses)
            return f"/api/channels flood on the other node: {dict(statuses)}"

        report = await measure(a, attack, name="channels flood", seconds=SECONDS)
        elapsed = time.monotonic() - started
        on_a = await asyncio.to_thread(cluster_stats, a)
        on_b = await asyncio.to_thread(cluster_stats, b)
        b_growth = b.rss() - b_before
    report.notes.append(f"B: {on_b}, A answered {on_a['answered']}, B RSS "
                        f"+{b_growth / MiB:.1f} MiB")
    report.check()
    assert statuses[200] > 1000, statuses  # the flood ran at speed (errors are HTTP 200)
    assert on_b["surveys"] <= RATE * (elapsed + 1), on_b  # bounded per second
    assert on_b["refused"] + on_b["shared"] > 1000, on_b  # the rest cost no broker I/O
    assert on_a["answered"] <= on_b["surveys"], (on_a, on_b)  # one answer per survey
    assert b_growth < 100 * MiB, b_growth
