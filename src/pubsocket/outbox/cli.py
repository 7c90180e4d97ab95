"""``pubsocket outbox init|relay``: create the outbox table, run the relay.

Both read settings like ``serve`` does (``--app DIR``'s ``.env``, then the environment):
``--dsn`` defaults to ``PUBSOCKET_OUTBOX_DSN``, ``--broker`` to ``PUBSOCKET_BROKER``,
``--table`` to ``PUBSOCKET_OUTBOX_TABLE``. The relay runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..log import configure_logging
from . import schema


def add_parser(sub: Any) -> None:
    """Register ``outbox`` and its two subcommands on the main parser's subparsers."""
    outbox = sub.add_parser("outbox", help="publish on commit: the outbox table and relay")
    actions = outbox.add_subparsers(dest="outbox_command", required=True)
    for name, text in (("init", "create the outbox table (and its trigger) if missing"),
                       ("relay", "publish committed outbox rows, exactly once, in order")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--dsn", help="PostgreSQL DSN (default: PUBSOCKET_OUTBOX_DSN)")
        action.add_argument("--table", help="outbox table (default: pubsocket_outbox)")
        action.add_argument("--app", default=".", help="project folder whose .env to read")
        if name == "relay":
            action.add_argument("--broker", help="broker URL (default: PUBSOCKET_BROKER)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``outbox init`` or ``outbox relay`` with `settings` (read by the caller from
    ``--app``'s ``.env`` and the environment); the exit status."""
    configure_logging(settings.log_level)
    dsn = args.dsn or settings.outbox_dsn
    if not dsn:
        raise ConfigError("outbox: give --dsn or set PUBSOCKET_OUTBOX_DSN")
    table = schema.checked(args.table or settings.outbox_table)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError("the outbox needs `pip install pubsocket[outbox]`") from None
    if args.outbox_command == "init":
        asyncio.run(_init(dsn, table))
        print(f"outbox table {table} is ready")
        return 0
    broker_url = args.broker or settings.broker
    if broker_url.partition("://")[0] == "memory":
        raise ConfigError("outbox relay: memory:// is inside one server; give --broker "
                          "redis://... (or run the relay in `serve` with PUBSOCKET_OUTBOX_DSN)")
    asyncio.run(_relay(dsn, table, broker_url, settings))
    return 0


async def _init(dsn: str, table: str) -> None:
    import psycopg

    from . import acreate_table

    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await acreate_table(conn, table)


async def _relay(dsn: str, table: str, broker_url: str, settings: Settings) -> None:
    from ..brokers import broker_from_url
    from ..hub.policy import HistoryRules
    from .relay import Relay

    rules = HistoryRules.from_settings(settings)
    broker = broker_from_url(broker_url, meta_ttl=settings.history_meta_ttl,
                             idempotency_ttl=settings.idempotency_ttl)
    await broker.start(lambda topic, pub: None)
    relay = Relay(dsn, broker, rules.policy, table=table, poll=settings.outbox_poll,
                  batch=settings.outbox_batch)
    task = asyncio.create_task(relay.run(), name="pubsocket-outbox-relay")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    print(f"outbox relay on {table} -> {broker_url.partition('@')[2] or broker_url}",
          file=sys.stderr, flush=True)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await broker.close()
