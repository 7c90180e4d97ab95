"""The outbox tests' PostgreSQL (tests/postgres_server.py): ``PUBSOCKET_TEST_POSTGRES``,
else a throwaway server this session starts. Each test gets a table of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.postgres_server import external_dsn, start_postgres


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    dsn = external_dsn()
    if dsn is not None:
        yield dsn
        return
    try:
        server = start_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"no PostgreSQL for the outbox tests: {exc}", pytrace=False)
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    """A fresh outbox table name; dropped (with its trigger function) afterwards."""
    import psycopg

    name = f"outbox_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"DROP FUNCTION IF EXISTS {name}_notify()")
