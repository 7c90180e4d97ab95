"""`pubsocket serve` (or any command) as a real subprocess: wait for its banner, keep
its output, stop it with SIGTERM. Every wait is bounded."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests import processes

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(rb"serving on (https?)://[\d.]+:(\d+)")
_CLEARED = ("API_KEY", "SECRET", "HOST", "PORT", "TINA4_DEBUG_LEVEL")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any pubsocket setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in _CLEARED and not k.startswith("PUBSOCKET_")}
    env.update(extra)
    return env


@dataclass
class Proc:
    """A running process, what it printed so far, and the port of its banner."""

    popen: subprocess.Popen[bytes]
    port: int = 0
    scheme: str = "http"
    output: bytearray = field(default_factory=bytearray)

    def read(self) -> str:
        """Everything printed so far (stdout and stderr)."""
        assert self.popen.stdout is not None
        chunk = self.popen.stdout.read()
        if chunk:
            self.output += chunk
        return self.output.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the output matches `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.read())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in {timeout}s: {self.read()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (then SIGKILL); the exit status."""
        status = processes.stop(self.popen, grace=timeout)
        self.read()
        return status


def command(args: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``python -m pubsocket ARGS`` with output piped and non-blocking."""
    popen = subprocess.Popen([sys.executable, "-m", "pubsocket", *args], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert popen.stdout is not None
    os.set_blocking(popen.stdout.fileno(), False)
    return popen


@contextmanager
def serving(args: Sequence[str], cwd: Path = ROOT, timeout: float = 20.0,
            **env: str) -> Iterator[Proc]:
    """Run ``pubsocket serve ARGS`` until its banner, yield it, SIGTERM it at the end."""
    proc = Proc(command(["serve", *args], cwd, clean_env(**env)))
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = BANNER.search(proc.output)
            proc.read()
            if found:
                proc.scheme, proc.port = found.group(1).decode(), int(found.group(2))
                break
            if proc.popen.poll() is not None:
                raise RuntimeError(f"server exited {proc.popen.returncode}: {proc.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {timeout}s: {proc.read()}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.stop()
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()


def run(args: Sequence[str], cwd: Path, timeout: float = 30.0,
        **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m pubsocket ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "pubsocket", *args], cwd=cwd,
                          env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def init_project(parent: Path, name: str = "proj") -> Path:
    """A fresh ``pubsocket init`` project under `parent`."""
    done = run(["init", name], parent)
    assert done.returncode == 0, done.stderr
    return parent / name


def env_of(project: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of a project's ``.env``."""
    return dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines()
                if "=" in line)


def subscriptions(port: int, api_key: str, scheme: str = "http",
                  context: object = None) -> float:
    """The server's ``pubsocket_subscriptions`` gauge (read from /metrics)."""
    import urllib.request

    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(req, timeout=5, context=context) as reply:  # type: ignore[arg-type]
        text = reply.read().decode()
    found = re.search(r"^pubsocket_subscriptions ([\d.e+]+)$", text, re.M)
    assert found is not None, text
    return float(found.group(1))


def wait_subscribed(port: int, api_key: str, count: int = 1, timeout: float = 10.0,
                    **kwargs: object) -> None:
    """Wait until the server counts at least `count` subscriptions."""
    deadline = time.monotonic() + timeout
    while subscriptions(port, api_key, **kwargs) < count:  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} subscriptions after {timeout}s")
        time.sleep(0.05)


def fetch(method: str, url: str, body: bytes | None = None,
          headers: dict[str, str] | None = None,
          context: object = None) -> tuple[int, bytes]:
    """(status, body) of one HTTP(S) request; error statuses are returned, not raised."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as reply:  # type: ignore[arg-type]
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def proxy_process(argv: Sequence[str], ports: Sequence[int], name: str,
                  stop: signal.Signals = signal.SIGTERM,
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a reverse proxy (nginx, Caddy) until it listens on every one of `ports`
    (15 s at most), yield it, then stop it with `stop` (SIGKILL after 10 s)."""
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not all(listening(port) for port in ports):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.05)
        yield proc
    finally:
        processes.stop(proc, stop)
        if proc.stderr:
            proc.stderr.close()


def certificates(into: Path) -> ssl.SSLContext:
    """A throwaway CA's certificate for 127.0.0.1 as `into`/cert.pem and key.pem, and a
    client context that trusts it."""
    import trustme

    ca = trustme.CA()
    into.mkdir()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(into / "cert.pem"))
    cert.private_key_pem.write_to_path(str(into / "key.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
