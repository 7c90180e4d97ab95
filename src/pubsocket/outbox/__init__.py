"""Publish on commit: an outbox table written in the app's own transaction.

::

    with psycopg.connect(dsn) as conn:          # the app's connection and transaction
        conn.execute("UPDATE orders SET state = 'paid' WHERE id = %s", (order_id,))
        pubsocket.outbox.publish(conn, f"orders:{order_id}", {"state": "paid"})
    # committed: the relay publishes it; rolled back: nobody ever sees it

The relay (`pubsocket outbox relay --dsn DSN --broker URL`, or inside `pubsocket serve`
with ``PUBSOCKET_OUTBOX_DSN``) publishes every committed row exactly once, in commit
order per topic; docs/publishing.md states the guarantees and why they hold.

`publish` / `apublish` take a psycopg 3 `Connection` / `AsyncConnection` (any object
with a DB-API style ``execute(sql, params)``); this module does not import psycopg.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from ..protocol import valid_topic
from .schema import DEFAULT_TABLE, create_lock_sql, create_sql, insert_sql


class _Conn(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


class _AsyncConn(Protocol):
    async def execute(self, query: Any, params: Any = ..., /) -> Any: ...


def _row(topic: str, data: Any) -> tuple[str, str]:
    if not valid_topic(topic):
        raise ValueError("invalid topic")
    try:
        return topic, orjson.dumps(data).decode()
    except TypeError as exc:
        raise ValueError("data is not JSON-serializable") from exc


def publish(conn: _Conn, topic: str, data: Any, *, table: str = DEFAULT_TABLE) -> None:
    """Queue `data` (JSON-serializable) for `topic` in `conn`'s current transaction:
    published after it commits, never if it rolls back. ValueError for an invalid
    topic or data; the table must exist (`create_table`, or a relay started once)."""
    conn.execute(insert_sql(table), _row(topic, data))


async def apublish(conn: _AsyncConn, topic: str, data: Any, *,
                   table: str = DEFAULT_TABLE) -> None:
    """`publish` on a psycopg `AsyncConnection`."""
    await conn.execute(insert_sql(table), _row(topic, data))


def create_table(conn: _Conn, table: str = DEFAULT_TABLE) -> None:
    """Create the outbox table and its trigger if missing, in `conn`'s transaction
    (commit it yourself, or use an autocommit connection's ``transaction()``)."""
    conn.execute(create_lock_sql(table))
    conn.execute(create_sql(table))


async def acreate_table(conn: _AsyncConn, table: str = DEFAULT_TABLE) -> None:
    """`create_table` on a psycopg `AsyncConnection`."""
    await conn.execute(create_lock_sql(table))
    await conn.execute(create_sql(table))


__all__ = ["DEFAULT_TABLE", "acreate_table", "apublish", "create_table", "publish"]
