"""Routed commands at full speed (issue 19, `hub/relay.py`): two real servers on a real
Redis. A flood of ``POST /relay`` on node B (4 pipelined connections, no HTTP rate
limit in front: the relay's own bounds are all that stands) for a session node A does
not hold, while a bystander on A publishes and times its own deliveries. A drops each
routed command (no session) at the cost of one Redis message; its bystander stays
fast, its RSS flat, and every command B handed over reached A (none lost on the way).
"""

from __future__ import annotations

import asyncio
import collections
import json
import urllib.request
from typing import Any

from tests.attack.harness import Server, attack_server, env_for_redis, measure
from tests.attack.test_http import flood
from tests.integration.spawn import ROOT

APP = ROOT / "tests/attack/apps/relay"
SECONDS = 5.0


def relay_stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http}/relay/stats", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def post_relay(node: str) -> bytes:
    body = json.dumps({"node": node, "session": "nobody", "data": "{}"}).encode()
    return (f"POST /relay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_a_flood_of_routed_commands_costs_the_owner_little(redis_url: str) -> None:
    env = env_for_redis(redis_url)
    statuses: collections.Counter[int] = collections.Counter()
    async with attack_server(APP, **env) as a, attack_server(APP, **env) as b:
        node_a = (await asyncio.to_thread(relay_stats, a))["node"]

        async def attack(server: Server, stop: asyncio.Event) -> str:
            await flood(b, stop, post_relay(node_a), SECONDS, statuses)
            return f"/relay flood on the other node: {dict(statuses)}"

        report = await measure(a, attack, name="routed command flood", seconds=SECONDS)
        sent = (await asyncio.to_thread(relay_stats, b))["sent"]
        async with asyncio.timeout(10):  # what Redis still carries reaches A
            while (await asyncio.to_thread(relay_stats, a))["dropped"] < sent:
                await asyncio.sleep(0.1)
        dropped = (await asyncio.to_thread(relay_stats, a))["dropped"]
    report.check()
    assert statuses[200] > 1000, statuses  # the flood ran at speed
    assert sent == statuses[200] and dropped == sent, (sent, dropped, statuses)
