"""Stopping the child processes the suite starts (servers, proxies, Redis, Postgres)."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
         grace: float = 10.0) -> int:
    """Stop `proc` if it still runs: `sig`, then SIGKILL if it has not exited within
    `grace` seconds (and at most 5 s more for that). Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
