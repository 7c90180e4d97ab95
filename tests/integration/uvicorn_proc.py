"""Run a host app (FastAPI, Django) under ``python -m uvicorn`` in a subprocess on a
free port, until the block ends (bounded start, SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tests.conftest import API_KEY, SECRET, free_port
from tests.integration.spawn import ROOT
from tests.processes import stop


@dataclass
class Host:
    """A running host app: its process, port and base URLs."""

    popen: subprocess.Popen[bytes]
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What the server printed so far (for assertion messages)."""
        assert self.popen.stdout is not None
        os.set_blocking(self.popen.stdout.fileno(), False)
        return (self.popen.stdout.read() or b"").decode(errors="replace")


@contextmanager
def uvicorn_host(target: str, app_dir: str, args: Sequence[str] = (),
                 ready_path: str = "/", timeout: float = 20.0, **env: str) -> Iterator[Host]:
    """``uvicorn target --app-dir app_dir`` with the test secrets, ready once
    `ready_path` answers (any status)."""
    port = free_port()
    full_env = {**os.environ, "API_KEY": API_KEY, "SECRET": SECRET,
                "PUBSOCKET_LOG_LEVEL": "WARNING", **env}
    popen = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--app-dir", app_dir, "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--ws", "websockets-sansio", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    host = Host(popen, port)
    try:
        _wait_ready(host, ready_path, timeout)
        yield host
    finally:
        stop(popen)
        if popen.stdout:
            popen.stdout.close()


def _wait_ready(host: Host, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.popen.poll() is not None:
            raise RuntimeError(f"server exited: {host.output()}")
        try:
            with urllib.request.urlopen(host.http + path, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s: {host.output()}")
