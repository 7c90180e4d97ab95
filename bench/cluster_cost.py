"""CPU of the cluster view's steps (hub/cluster.py), each run alone in a loop.

    python bench/cluster_cost.py [--topics 10000] [--n 200]

On the real objects, in-process, without a broker: one node info received (decode +
registry), one announcement built, one survey answered by a node with `--topics`
topics (its busiest 10,000 matching, the JSON reply) with and without a pattern, and
the asker's merge of two such answers. CPU time (`time.process_time`) per call, best
of 5 runs (repeatable on a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from pubsocket import Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.hub.cluster import REPLY_MARK
from pubsocket.hub.control import decode
from pubsocket.hub.survey import Survey


class Sink:
    def deliver(self, frame: bytes) -> None:
        pass

    def close_nowait(self, code: int, reason: str = "") -> None:
        pass


def best(step: Callable[[], object], n: int) -> float:
    """Seconds of CPU per call, best of 5 runs of `n` calls."""
    runs = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            step()
        runs.append((time.process_time() - started) / n)
    return min(runs)


async def main(topics: int, n: int) -> None:
    hub = Hub(Settings(), MemoryBroker())
    await hub.start()
    for i in range(topics):
        await hub.subscribe(Sink(), f"room:{i}")
    cluster = hub.cluster
    info = orjson.dumps({"op": "node", "node": "0123456789abcdef", "name": "pubsocket",
                         "version": "1.0", "clients": 10_000, "users": 9_000,
                         "topics": topics, "subs": topics, "uptime": 1234})
    survey = {"op": "survey", "node": "fedcba9876543210", "id": 1, "pattern": "",
              "cap": 10_000}
    pattern = {**survey, "pattern": "room:1*"}

    def heard() -> None:
        command = decode(info)
        assert command is not None
        cluster.apply(command)

    def announce() -> bytes:
        i = cluster.describe()
        return orjson.dumps({"op": "node", "node": cluster.node, "name": i.name,
                             "version": i.version, "clients": i.clients, "users": i.users,
                             "topics": i.topics, "subs": i.subscriptions,
                             "uptime": i.uptime})

    def answer(command: dict[str, Any]) -> Callable[[], bytes]:
        def run() -> bytes:
            return REPLY_MARK + orjson.dumps({"id": 1, "node": cluster.node,
                                              "channels": cluster.local_channels(
                                                  command["pattern"], command["cap"])})
        return run

    reply = answer(survey)()[1:]

    def merge() -> None:
        pending = cluster._surveys[1] = Survey({"a" * 16, "b" * 16}, 10_000)
        for node in ("a" * 16, "b" * 16):
            message: Any = orjson.loads(reply)
            message["node"] = node
            cluster.reply(orjson.dumps(message))
        assert pending.done.done()
        del cluster._surveys[1]

    us = 1e6
    print(f"node info received (decode + registry): {best(heard, n * 50) * us:.1f} µs")
    print(f"node info announced (describe + JSON):  {best(announce, n * 50) * us:.1f} µs")
    print(f"survey answered, {topics} topics, no pattern: "
          f"{best(answer(survey), n) * us:.0f} µs ({len(reply)} bytes)")
    print(f"survey answered, {topics} topics, 'room:1*':  "
          f"{best(answer(pattern), n) * us:.0f} µs")
    print(f"two answers of {min(topics, 10_000)} channels received: "
          f"{best(merge, n) * us:.0f} µs")
    await hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.topics, args.n))
