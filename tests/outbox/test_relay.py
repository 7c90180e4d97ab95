"""The outbox against a real PostgreSQL and Redis: exactly the committed rows, once each,
in commit order, through kills; one relay per table; woken by NOTIFY."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psycopg

from pubsocket import outbox
from pubsocket.outbox.relay import Relay
from tests.outbox.helpers import (
    HISTORY,
    data_of,
    prefixed,
    publishing_broker,
    relay_process,
    running,
    start_relay,
    subscriber,
    wait_count,
)


async def test_1000_transactions_through_two_kill_9s_arrive_once_in_order(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url, "t0", "t1") as node:
        committed: dict[str, list[int]] = {"t0": [], "t1": []}
        with relay_process(postgres_dsn, broker_url, table) as procs:
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
                for _ in range(100):  # the relay creates the table when it starts
                    if (await (await conn.execute(
                            "SELECT to_regclass(%s) IS NOT NULL", (table,))).fetchone()
                            or (False,))[0]:
                        break
                    await conn.rollback()
                    await asyncio.sleep(0.1)
                await conn.rollback()
                for i in range(1000):
                    topic = f"t{i % 2}"
                    await outbox.apublish(conn, topic, {"i": i}, table=table)
                    if i % 10 == 9:
                        await conn.rollback()  # every tenth transaction is rolled back
                    else:
                        await conn.commit()
                        committed[topic].append(i)
                    if i in (300, 650):  # kill -9 mid-run, restart at once
                        os.kill(procs[-1].pid, signal.SIGKILL)
                        procs[-1].wait(5)
                        procs.append(start_relay(postgres_dsn, broker_url, table))
                    if i % 50 == 0:
                        await asyncio.sleep(0.02)  # let the relay be mid-round at a kill
            await wait_count(node, 900, timeout=20)
            await node.settle(0.5)
        assert len(procs) == 3
        for topic in ("t0", "t1"):
            assert [d["i"] for d in data_of(node, topic)] == committed[topic]
        assert len(node.received) == 900
        for topic in ("t0", "t1"):  # no publish was repeated behind our back either
            offsets = [pub.offset for t, pub in node.publications if t == topic]
            assert offsets == list(range(1, len(committed[topic]) + 1))


class _Crash(Exception):
    """Stands for a kill between the broker publish and the DELETE."""


class CrashAfterPublish(Relay):
    async def _publish(self, rows: list[tuple[int, str, str]]) -> int:
        await super()._publish(rows)
        raise _Crash


async def test_a_relay_dying_between_publish_and_delete_publishes_nothing_twice(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url, "o") as node, \
            publishing_broker(broker_url) as broker:
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            await outbox.acreate_table(conn, table)
            for i in range(5):
                await outbox.apublish(conn, "o", i, table=table)
            await conn.commit()
        crashing = CrashAfterPublish(postgres_dsn, broker, lambda t: HISTORY, table=table)
        task = asyncio.create_task(crashing.run())
        await wait_count(node, 5, timeout=10)
        async with asyncio.timeout(5):
            while not task.done():
                await asyncio.sleep(0.01)
        assert isinstance(task.exception(), _Crash)
        async with running(Relay(postgres_dsn, broker, lambda t: HISTORY, table=table)):
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
                await outbox.apublish(conn, "o", 5, table=table)
                await conn.commit()
            await wait_count(node, 6, timeout=10)
            await node.settle(0.3)
        assert data_of(node, "o") == [0, 1, 2, 3, 4, 5]
        assert [pub.offset for _, pub in node.publications] == [1, 2, 3, 4, 5, 6]


async def test_a_late_commit_with_a_smaller_id_is_not_skipped(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url, "o") as node, \
            publishing_broker(broker_url) as broker:
        relay = Relay(postgres_dsn, broker, lambda t: HISTORY, table=table, poll=0.05)
        async with running(relay), \
                await psycopg.AsyncConnection.connect(postgres_dsn) as slow, \
                await psycopg.AsyncConnection.connect(postgres_dsn) as fast:
            await outbox.apublish(slow, "o", "early id, late commit", table=table)
            await outbox.apublish(fast, "o", "later id, early commit", table=table)
            await fast.commit()
            await wait_count(node, 1, timeout=5)
            await asyncio.sleep(0.2)  # several relay rounds pass with the gap open
            await slow.commit()
            await wait_count(node, 2, timeout=5)
        # The two overlapped, so either order is allowed; neither may be lost.
        assert data_of(node, "o") == ["later id, early commit", "early id, late commit"]


async def test_commit_order_holds_for_transactions_that_do_not_overlap(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    """Four writers, random-length transactions: whenever one transaction's COMMIT
    returned before another began, the first one's messages arrive first."""
    import random

    broker_url, _ = prefixed(redis_url)
    spans: dict[int, tuple[float, float]] = {}  # txn -> (began, commit returned)

    async def writer(w: int) -> None:
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            for j in range(40):
                n = w * 1000 + j
                began = time.monotonic()
                await outbox.apublish(conn, "o", [n, 0], table=table)
                await asyncio.sleep(random.random() * 0.01)
                await outbox.apublish(conn, "o", [n, 1], table=table)
                await conn.commit()
                spans[n] = (began, time.monotonic())

    async with subscriber(redis_url, broker_url, "o") as node, \
            publishing_broker(broker_url) as broker, \
            running(Relay(postgres_dsn, broker, lambda t: HISTORY, table=table)):
        await asyncio.gather(*(writer(w) for w in range(4)))
        await wait_count(node, 320, timeout=15)
    arrived = [tuple(d) for d in data_of(node, "o")]
    assert sorted(arrived) == sorted((n, k) for n in spans for k in (0, 1))
    first = {n: arrived.index((n, 0)) for n in spans}
    assert all(arrived.index((n, 1)) > first[n] for n in spans)  # in a transaction: in order
    checked = 0
    for a, (_, a_done) in spans.items():
        for b, (b_began, _) in spans.items():
            if a_done < b_began:
                checked += 1
                assert arrived.index((a, 1)) < first[b], (a, b)
    assert checked > 1000  # the rule was really exercised


async def test_one_relay_per_table_the_second_takes_over(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url, "o") as node, \
            publishing_broker(broker_url) as broker:
        first = Relay(postgres_dsn, broker, lambda t: HISTORY, table=table)
        second = Relay(postgres_dsn, broker, lambda t: HISTORY, table=table,
                       lock_retry=0.1)
        async with running(first) as first_task, running(second, active=False):
            await asyncio.sleep(0.5)
            assert first.active.is_set() and not second.active.is_set()
            first_task.cancel()
            async with asyncio.timeout(5):
                await second.active.wait()
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
                await outbox.apublish(conn, "o", "after the handover", table=table)
                await conn.commit()
            await wait_count(node, 1, timeout=5)
        assert second.stats.published == 1 and first.stats.published == 0


async def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url, "o") as node, \
            publishing_broker(broker_url) as broker:
        relay = Relay(postgres_dsn, broker, lambda t: HISTORY, table=table, poll=60.0)
        async with running(relay), \
                await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
            await asyncio.sleep(0.2)  # the relay is waiting now
            for i in range(3):
                t0 = time.monotonic()
                await outbox.apublish(conn, "o", i, table=table)
                await conn.commit()
                await wait_count(node, i + 1, timeout=5)
                # < 3 s: slack for a loaded box (Postgres, the relay, Redis, a node);
                # a relay that waits for its poll (60 s) still fails.
                assert time.monotonic() - t0 < 3.0
                await asyncio.sleep(0.1)
        assert relay.stats.notified >= 3


async def test_rows_wait_out_a_redis_outage_and_then_go_in_order(
    postgres_dsn: str, redis_server_binary: str, table: str
) -> None:
    """Redis killed and restarted: committed rows wait in the table (nothing lost, no
    NOTIFY needed to retry: poll 0) and are published in order once it is back."""
    from tests.redis_server import RedisProcess

    server = RedisProcess(binary=redis_server_binary).start()
    try:
        async with publishing_broker(f"{server.url}?prefix=outage:") as broker:
            relay = Relay(postgres_dsn, broker, lambda t: HISTORY, table=table, poll=0,
                          retry=0.1)
            async with running(relay), \
                    await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
                for i in range(3):
                    await outbox.apublish(conn, "o", i, table=table)
                await conn.commit()
                async with asyncio.timeout(5):
                    while relay.stats.published < 3:
                        await asyncio.sleep(0.01)
                server.kill()
                for i in range(3, 8):  # one transaction each, while Redis is away
                    await outbox.apublish(conn, "o", i, table=table)
                    await conn.commit()
                await asyncio.sleep(0.5)
                assert relay.stats.published == 3 and relay.stats.failures > 0
                server = RedisProcess(port=server.port, binary=redis_server_binary).start()
                async with asyncio.timeout(15):
                    while relay.stats.published < 8:
                        await asyncio.sleep(0.02)
                page = await broker.history("o", None, 100)
    finally:
        server.stop()
    # A Redis without persistence came back empty: a new epoch, offsets from 1.
    assert [(p.offset, int(p.payload)) for p in page.publications] == [
        (n - 2, n) for n in range(3, 8)]
