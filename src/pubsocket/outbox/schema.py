"""The outbox table, its wake-up trigger and the SQL the writer and the relay run.

One table per outbox (default ``pubsocket_outbox``)::

    id         bigserial PRIMARY KEY    -- insertion order; the relay's idempotency key
    topic      text NOT NULL
    payload    json NOT NULL            -- the publication's data, as the app wrote it
    created_at timestamptz NOT NULL     -- clock_timestamp() at insert (for monitoring)

A statement-level ``AFTER INSERT`` trigger calls ``pg_notify(<table name>, '')``:
PostgreSQL delivers a notification only when its transaction commits (and folds equal
ones of one transaction into one), so the relay wakes once per committing transaction,
never for a rolled-back one. A row stays in the table until the relay published it,
then the relay deletes it. Needs PostgreSQL 14+ (``CREATE OR REPLACE TRIGGER``).

Table names are checked against `TABLE_RE` (an optionally schema-qualified plain
identifier) before they are put into SQL, so no caller-supplied text is ever quoted.
"""

from __future__ import annotations

import functools
import re

from ..errors import ConfigError

DEFAULT_TABLE = "pubsocket_outbox"
TABLE_RE = re.compile(r"(?:[a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,50}")


def checked(table: str) -> str:
    """`table` if it is a plain lower-case identifier (optionally ``schema.name``)."""
    if not TABLE_RE.fullmatch(table):
        raise ConfigError(f"outbox table {table!r}: use a lower-case identifier "
                          "(letters, digits, _), optionally schema-qualified")
    return table


@functools.lru_cache(maxsize=64)
def insert_sql(table: str) -> str:
    """The writer's INSERT (params: topic, payload JSON text)."""
    return f"INSERT INTO {checked(table)} (topic, payload) VALUES (%s, %s::json)"


def create_sql(table: str) -> str:
    """Create the table, the notify function and the trigger if missing (idempotent)."""
    t = checked(table)
    return f"""
CREATE TABLE IF NOT EXISTS {t} (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    payload json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION {t}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER {t.rpartition('.')[2]}_notify AFTER INSERT ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {t}_notify('{channel(t)}');
"""


def channel(table: str) -> str:
    """The LISTEN/NOTIFY channel of `table`'s outbox (its checked name)."""
    return checked(table)


def lock_sql(table: str, block: bool) -> str:
    """Take the session-level advisory lock that lets one relay work on `table`."""
    fn = "pg_advisory_lock" if block else "pg_try_advisory_lock"
    return f"SELECT {fn}(hashtext('pubsocket.outbox:{checked(table)}'))"


def create_lock_sql(table: str) -> str:
    """A transaction lock serializing creations of `table` (concurrent ``CREATE ... IF NOT
    EXISTS`` can still fail); not the relay's lock, which a running relay holds."""
    return f"SELECT pg_advisory_xact_lock(hashtext('pubsocket.outbox.create:{checked(table)}'))"


def select_sql(table: str) -> str:
    """Committed rows, oldest id first (param: the batch size)."""
    return f"SELECT id, topic, payload::text FROM {checked(table)} ORDER BY id LIMIT %s"


def delete_sql(table: str) -> str:
    """Forget published rows (param: a list of ids)."""
    return f"DELETE FROM {checked(table)} WHERE id = ANY(%s)"
