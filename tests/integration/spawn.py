"""Start `pubsocket serve` as a real subprocess on a free port (bounded waits)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import API_KEY, SECRET
from tests.processes import stop

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(rb"serving on http://[\d.]+:(\d+)")


@dataclass
class Proc:
    """A running server process and its port."""

    popen: subprocess.Popen[bytes]
    port: int
    output: bytes = b""  # what it printed until it was ready (the banner, log lines)

    @property
    def pid(self) -> int:
        return self.popen.pid


@contextmanager
def spawn(app_dir: str | Path, port: int = 0, timeout: float = 15.0,
          **env: str) -> Iterator[Proc]:
    """Run ``pubsocket serve app_dir`` until the block ends (then SIGTERM, then SIGKILL)."""
    full_env = {**os.environ, "API_KEY": API_KEY, "SECRET": SECRET,
                "PUBSOCKET_LOG_LEVEL": "WARNING", **env}
    popen = subprocess.Popen(
        [sys.executable, "-m", "pubsocket", "serve", str(app_dir), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT,
    )
    try:
        yield Proc(popen, *_wait_ready(popen, timeout))
    finally:
        stop(popen)
        if popen.stdout:
            popen.stdout.close()


def _wait_ready(popen: subprocess.Popen[bytes], timeout: float) -> tuple[int, bytes]:
    assert popen.stdout is not None
    os.set_blocking(popen.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = popen.stdout.read()
        if chunk:
            seen += chunk
            match = _READY.search(seen)
            if match:
                return int(match.group(1)), seen
        if popen.poll() is not None:
            raise RuntimeError(f"server exited: {seen.decode(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"server not ready in {timeout}s: {seen.decode(errors='replace')}")
