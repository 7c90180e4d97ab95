"""Server process management for the runner: free port, start, readiness, stop."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WS_PATH = "/ws/chat"


@dataclass
class ServerSpec:
    name: str
    cmd: list[str]  # may contain "{port}"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    # sent with the readiness probe's upgrade (a secured endpoint answers 401 without)
    ready_headers: dict[str, str] = field(default_factory=dict)

    def argv(self, port: int) -> list[str]:
        return [a.replace("{port}", str(port)) for a in self.cmd]


def node_spec() -> ServerSpec:
    return ServerSpec("node", ["node", str(BENCH / "node" / "server.js")])


def uws_spec() -> ServerSpec:
    """uWebSockets (uWS.js v20 through the npm package `uwebsockets`), its own pub/sub."""
    return ServerSpec("uws", ["node", str(BENCH / "node" / "uws_server.js")])


def pubsocket_spec(cmd: str | None = None, env: dict[str, str] | None = None) -> ServerSpec:
    argv = (
        shlex.split(cmd)
        if cmd
        else [
            sys.executable,
            "-m",
            "pubsocket",
            "serve",
            "bench/app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]
    )
    base = {
        "PUBSOCKET_RATE_LIMIT": "0",
        "PUBSOCKET_PUBLISH_BYTE_RATE": "0",
        "PUBSOCKET_MAX_CONNECTIONS": "0",
        "PUBSOCKET_LOG_LEVEL": "WARNING",
    }
    base.update(env or {})
    return ServerSpec("pubsocket", argv, base)


def picows_spec(coalesce: bool = False) -> ServerSpec:
    cmd = [sys.executable, str(BENCH / "picows_server.py"), "--port", "{port}"]
    return ServerSpec(
        "picows-coalesce" if coalesce else "picows", [*cmd, "--coalesce"] if coalesce else cmd
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ws_handshake_ok(
    port: int, timeout: float = 1.0, headers: dict[str, str] | None = None
) -> bool:
    """True if a WebSocket upgrade on WS_PATH (with `headers`) gets '101' back."""
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    req = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            buf = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in buf and time.monotonic() < deadline and len(buf) < 8192:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return buf.startswith(b"HTTP/1.1 101")
    except OSError:
        return False


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """preexec_fn pinning the child (and every thread/process it later starts)."""
    if not cpus:
        return None
    frozen = set(cpus)

    def _pin() -> None:
        os.sched_setaffinity(0, frozen)

    return _pin


def default_pinning() -> tuple[set[int], set[int]] | None:
    """(server cpus, loadgen cpus): split the CPUs we may use, server gets the first half.

    Without pinning, this 2-vCPU VM's scheduler sometimes packs the server and the
    loadgen onto one vCPU (wake-affine), which halves throughput at random.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


class RunningServer:
    def __init__(
        self,
        spec: ServerSpec,
        log_path: Path,
        ready_timeout: float = 30.0,
        cpus: set[int] | None = None,
    ) -> None:
        self.spec = spec
        self.port = free_port()
        env = dict(os.environ)
        env.update(spec.env)
        env["PORT"] = str(self.port)
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            spec.argv(self.port),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: we stop exactly what we started
            preexec_fn=pin_to(cpus),
        )
        self._wait_ready(ready_timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"{self.spec.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if ws_handshake_ok(self.port, headers=self.spec.ready_headers):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.spec.name} not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 800) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)  # the group we created for this child
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
