"""The hub's kept subscription count through real sessions: a real server on port 0,
real `websockets` clients subscribing (some recovering with `since`), unsubscribing and
disconnecting at random; the count always equals the brute-force sum over the topics
and, once the server caught up, the pairs the clients hold."""

from __future__ import annotations

import random
from typing import Any

from websockets.asyncio.client import ClientConnection

from pubsocket import Hub
from tests.app.test_pubsub import until
from tests.app.test_recovery import cmd, recovery_app, recv_json, v1_client

TOPICS = ("ta", "tb", "tc")
STEPS = 60


async def subscribe(ws: ClientConnection, topic: str, cmd_id: str, **extra: Any) -> None:
    """Subscribe and wait for its ack, skipping the publications that arrive first."""
    await ws.send(cmd("subscribe", topic, id=cmd_id, **extra))
    for _ in range(200):  # bounded: far more than the test publishes
        reply = await recv_json(ws)
        if reply.get("id") == cmd_id:
            assert reply["type"] == "ack", reply
            return
    raise AssertionError("no subscribe ack")


def brute(hub: Hub) -> int:
    return sum(sum(len(group) for group in entry.subs.values()) + len(entry.held)
               for entry in hub._topics.values())


async def test_kept_count_follows_real_sessions(serve: Any) -> None:
    rng = random.Random(7)
    srv = await serve(recovery_app())
    hub: Hub = srv.app.hub
    clients: dict[ClientConnection, set[str]] = {}

    def caught_up() -> bool:
        kept = hub.subscription_count
        assert kept == brute(hub)
        return kept == sum(len(topics) for topics in clients.values())

    try:
        for step in range(STEPS):
            op = rng.randrange(5)
            if op == 0 or not clients:
                clients[await v1_client(srv)] = set()
            ws = rng.choice(list(clients))
            topic = rng.choice(TOPICS)
            if op in (1, 2):  # subscribe, the second kind recovering from a position
                extra: dict[str, Any] = {}
                if op == 2 and (entry := hub._topics.get(topic)) is not None:
                    extra["since"] = {"offset": max(0, entry.offset - 1),
                                      "epoch": entry.epoch}
                await subscribe(ws, topic, f"s{step}", **extra)
                clients[ws].add(topic)
                await hub.publish(topic, step)
            elif op == 3:
                await ws.send(cmd("unsubscribe", topic))
                clients[ws].discard(topic)
            elif op == 4:  # disconnect: the server drops every subscription of it
                await ws.close()
                del clients[ws]
            await until(caught_up, 3.0)
    finally:
        for ws in clients:
            await ws.close()
    clients.clear()
    await until(caught_up, 3.0)
    assert hub.subscription_count == 0
    assert hub.stats.recoveries > 0  # the `since` path ran
