"""The outbox relay: committed rows to the broker, exactly once, in commit order per topic.

One round: ``SELECT ... ORDER BY id LIMIT batch`` (only committed rows are visible),
publish each row with the idempotency key ``outbox:<table>:<id>`` (pipelined, in id
order, on one broker connection), then ``DELETE`` the published rows. Rounds repeat
while rows come back; then the relay waits for a NOTIFY from the table's trigger (a
transaction that inserted rows committed) or `poll` seconds, whichever comes first.

Why this is correct (docs/publishing.md has the longer proof sketch):

* **Nothing rolled back**: a relay's snapshot never contains uncommitted rows.
* **Nothing skipped**: rows are deleted once published and the next round reads whatever
  is left, whatever its id; a transaction that got a small id but commits late is
  simply read by a later round. (A cursor ``id > last`` would skip it.)
* **Commit order**: if T1's COMMIT returned before T2 began, T1's ids are smaller (the
  sequence is increasing; do not give it a CACHE above 1) and any snapshot that shows T2's
  rows also shows T1's, which stay in the table until published; so T1's rows come
  first in the same round or an earlier one.
* **Exactly once across crashes**: killed between the publish and the DELETE, the next
  relay publishes the same rows with the same keys, and the broker answers the first
  publication's position without publishing again (within its `idempotency_ttl`).
* **One relay per table**: a session-level advisory lock; a second relay retries it
  every `lock_retry` seconds and takes over when the first one's session ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..brokers.base import Broker, HistoryPolicy, Publication
from ..errors import BrokerError
from . import schema

log = logging.getLogger("pubsocket.outbox")

PolicyFn = Callable[[str], HistoryPolicy]


@dataclass
class RelayStats:
    """Counters: rows published (and deleted), rounds run, wake-ups by NOTIFY, failures."""

    published: int = 0
    rounds: int = 0
    notified: int = 0
    failures: int = 0


class Relay:
    """Moves committed outbox rows of `table` at `dsn` to `broker` (already started).

    `policy(topic)` is the topic's history policy (the hub's, or `HistoryRules`).
    `poll` is the polling fallback in seconds (0: wait for NOTIFY only), `batch` the rows
    per round (0: 500).
    `run()` works until cancelled: it reconnects after database errors and backs off
    after broker errors, never losing or repeating a row (see the module docstring).
    `active` is set while this relay holds the table's lock.
    """

    def __init__(self, dsn: str, broker: Broker, policy: PolicyFn, *,
                 table: str = schema.DEFAULT_TABLE, poll: float = 1.0, batch: int = 500,
                 lock_retry: float = 0.5, retry: float = 0.5) -> None:
        self.dsn = dsn
        self.broker = broker
        self.policy = policy
        self.table = schema.checked(table)
        self.poll = poll if poll > 0 else None  # 0: no polling, NOTIFY only
        self.batch = batch if batch > 0 else 500
        self.lock_retry = lock_retry
        self.retry = retry
        self.active = asyncio.Event()
        self.stats = RelayStats()
        self._db_down = self._broker_down = False  # log an outage once, not every retry

    async def run(self) -> None:
        """Relay until cancelled."""
        import psycopg  # the outbox extra; imported only when a relay runs

        while True:
            try:
                await self._session()
            except (psycopg.Error, OSError) as exc:
                self.stats.failures += 1
                if not self._db_down:  # once per outage, not every retry
                    self._db_down = True
                    log.warning("outbox relay lost its database (%s); reconnecting", exc)
            finally:
                self.active.clear()
            await asyncio.sleep(self.retry)

    async def _session(self) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        try:
            self._db_down = False
            await self._lock(conn)
            found = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                              (self.table,))).fetchone()
            if not (found and found[0]):  # a relay role without CREATE works on a made table
                async with conn.transaction():
                    await conn.execute(schema.create_lock_sql(self.table))
                    await conn.execute(schema.create_sql(self.table))
            await conn.execute(f'LISTEN "{schema.channel(self.table)}"')
            self.active.set()
            log.info("outbox relay active on %s", self.table)
            while True:
                if await self._round(conn):
                    continue
                # A NOTIFY that arrived during the round is kept in psycopg's backlog
                # (3.3+) and ends this wait at once: no commit is slept through.
                async for _ in conn.notifies(timeout=self.poll, stop_after=1):
                    self.stats.notified += 1
        finally:
            await conn.close()

    async def _lock(self, conn: Any) -> None:
        """Take the table's lock, retrying while another relay holds it."""
        while True:
            row = await (await conn.execute(schema.lock_sql(self.table, False))).fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(self.lock_retry)  # another relay works on this table

    async def _round(self, conn: Any) -> int:
        """Publish and delete one batch; the number of rows read (0: none left)."""
        cur = await conn.execute(schema.select_sql(self.table), (self.batch,))
        rows: list[tuple[int, str, str]] = await cur.fetchall()
        self.stats.rounds += 1
        if not rows:
            return 0
        done = await self._publish(rows)
        if done:
            await conn.execute(schema.delete_sql(self.table), ([row[0] for row in rows[:done]],))
            self.stats.published += done
        if done < len(rows):  # the broker refused or is away: the rest waits, in order
            self.stats.failures += 1
            await asyncio.sleep(self.retry)
        elif self._broker_down:
            self._broker_down = False
            log.info("outbox relay: the broker takes rows again")
        return len(rows)  # rows are pending: another round, not a wait for NOTIFY

    async def _publish(self, rows: list[tuple[int, str, str]]) -> int:
        """Publish `rows` in order (pipelined where the broker can); how many of the
        first ones the broker took. Those after a failure are retried next round."""
        broker, prefix = self.broker, f"outbox:{self.table}:"
        sent: list[Any] = []
        for row_id, topic, payload in rows:
            data, key = payload.encode(), prefix + str(row_id)
            result = broker.publish_nowait(topic, data, self.policy(topic), idempotency_key=key)
            if result is None:  # a broker without an inline path: one at a time
                result = asyncio.ensure_future(
                    broker.publish(topic, data, self.policy(topic), idempotency_key=key))
                await asyncio.wait([result])
            sent.append(result)
        done = 0
        for result in sent:
            if isinstance(result, Publication):
                done += 1
                continue
            try:
                await result
            except BrokerError as exc:
                if not self._broker_down:  # once per outage, not every retry
                    self._broker_down = True
                    log.warning("outbox relay: the broker did not take a row (%s); "
                                "retrying every %.1fs", exc, self.retry)
                for rest in sent[done + 1:]:  # settle the others so none is left unawaited
                    if isinstance(rest, asyncio.Future):
                        await asyncio.wait([rest])
                        if not rest.cancelled():
                            rest.exception()
                return done
            done += 1
        return done
