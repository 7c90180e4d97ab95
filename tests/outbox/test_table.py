"""The outbox table: `pubsocket outbox init`, the relay creating it, the writer's checks,
and the relay inside `pubsocket serve` (PUBSOCKET_OUTBOX_DSN)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pubsocket import client as pc
from pubsocket import outbox
from pubsocket.errors import ConfigError
from pubsocket.outbox.relay import Relay
from pubsocket.outbox.schema import checked
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, spawn
from tests.outbox.helpers import HISTORY, prefixed, running, subscriber


def _exists(dsn: str, table: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        return bool(row and row[0])


def test_outbox_init_creates_the_table_and_is_idempotent(postgres_dsn: str, table: str) -> None:
    assert not _exists(postgres_dsn, table)
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "pubsocket", "outbox", "init", "--dsn", postgres_dsn,
             "--table", table], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert f"outbox table {table} is ready" in done.stdout
    assert _exists(postgres_dsn, table)
    with psycopg.connect(postgres_dsn) as conn:
        cols = conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
        triggers = conn.execute("SELECT count(*) FROM information_schema.triggers "
                                "WHERE event_object_table = %s", (table,)).fetchone()
    assert cols == [("id", "bigint"), ("topic", "text"), ("payload", "json"),
                    ("created_at", "timestamp with time zone")]
    assert triggers == (1,)


def test_outbox_commands_refuse_bad_arguments(postgres_dsn: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBSOCKET_")}
    for args, expected in (
        (["init", "--dsn", postgres_dsn, "--table", "Robert'); DROP TABLE x;--"],
         "lower-case identifier"),
        (["relay", "--dsn", postgres_dsn, "--broker", "memory://"], "memory://"),
        (["init"], "--dsn"),
    ):
        done = subprocess.run([sys.executable, "-m", "pubsocket", "outbox", *args],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path,
                              env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr


async def test_the_relay_creates_its_table_on_start(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    async with subscriber(redis_url, broker_url) as node:
        relay = Relay(postgres_dsn, node.broker, lambda t: HISTORY, table=table)
        async with running(relay):
            assert _exists(postgres_dsn, table)


def test_the_writer_checks_its_input_and_needs_the_table(postgres_dsn: str, table: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        with pytest.raises(ValueError, match="invalid topic"):
            outbox.publish(conn, "bad topic!", 1, table=table)
        with pytest.raises(ValueError, match="JSON"):
            outbox.publish(conn, "t", object(), table=table)
        with pytest.raises(psycopg.errors.UndefinedTable):
            outbox.publish(conn, "t", 1, table=table)
        conn.rollback()
        outbox.create_table(conn, table)
        outbox.publish(conn, "t", {"a": [1, "é"]}, table=table)
        conn.commit()
        rows = conn.execute(f"SELECT topic, payload::text FROM {table}").fetchall()
    assert rows == [("t", '{"a":[1,"é"]}')]
    with pytest.raises(ConfigError):
        checked("a-b")


async def test_serve_runs_the_relay_in_process(
    postgres_dsn: str, redis_url: str, table: str
) -> None:
    broker_url, _ = prefixed(redis_url)
    app = ROOT / "tests/integration/apps/hub"
    with spawn(app, PUBSOCKET_BROKER=broker_url, PUBSOCKET_OUTBOX_DSN=postgres_dsn,
               PUBSOCKET_OUTBOX_TABLE=table) as node:
        async with pc.connect(f"ws://127.0.0.1:{node.port}/ws/chat", token=API_KEY) as client:
            sub = await client.subscribe("orders:1")
            for _ in range(100):
                if _exists(postgres_dsn, table):
                    break
                await asyncio.sleep(0.1)
            async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
                await outbox.apublish(conn, "orders:1", {"state": "paid"}, table=table)
                await conn.commit()
            event = await asyncio.wait_for(sub.__anext__(), 10)
    assert (event.topic, event.data, event.offset) == ("orders:1", {"state": "paid"}, 1)


def test_the_outbox_settings_come_from_the_environment() -> None:
    from pubsocket import Settings

    settings = Settings.from_env({
        "PUBSOCKET_OUTBOX_DSN": "postgresql://app@db/app", "PUBSOCKET_OUTBOX_TABLE": "ops.outbox",
        "PUBSOCKET_OUTBOX_POLL": "0", "PUBSOCKET_OUTBOX_BATCH": "50",
        "PUBSOCKET_IDEMPOTENCY_TTL": "60"}, env_file=None)
    assert (settings.outbox_dsn, settings.outbox_table, settings.outbox_poll,
            settings.outbox_batch, settings.idempotency_ttl) == (
        "postgresql://app@db/app", "ops.outbox", 0.0, 50, 60.0)
    assert Settings().outbox_dsn is None  # no relay inside serve unless asked
    relay = Relay("postgresql://x", object(), lambda t: HISTORY, poll=0, batch=0)  # type: ignore[arg-type]
    assert (relay.poll, relay.batch) == (None, 500)
