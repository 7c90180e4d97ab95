"""The deployment files in the repo, exercised: the systemd unit (systemd-analyze
verify, then its ExecStart run with its Environment and stopped with its KillSignal),
the Dockerfile (parsed with BuildKit's parser, its CMD run with its ENV and its
HEALTHCHECK run against that), the Kubernetes manifest (a server run with its env,
probed at the paths it names). No image is built: there is no registry here."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dockerfile
import yaml

from pubsocket import Settings
from pubsocket.config import _ENV_NAMES
from tests.conftest import API_KEY, SECRET, free_port
from tests.deploy.proc import BANNER, ROOT, clean_env, fetch, init_project
from tests.tools import require

UNIT = ROOT / "deploy" / "systemd" / "pubsocket.service"
DOCKERFILE = ROOT / "Dockerfile"
MANIFEST = ROOT / "deploy" / "k8s" / "pubsocket.yaml"
KNOWN = {name for names in _ENV_NAMES.values() for name in names}


def start(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    """Start a server command; wait for its banner; (process, port)."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 20
    for line in proc.stdout:  # bounded: the server prints its banner or exits
        seen += line
        found = BANNER.search(line.encode())
        if found:
            return proc, int(found.group(2))
        assert time.monotonic() < deadline, seen
    raise AssertionError(f"exited {proc.wait(5)} before its banner: {seen}")


def stop(proc: subprocess.Popen[str], sig: int, timeout: float) -> tuple[int, str]:
    """Send `sig`; (exit status, the rest of the output)."""
    proc.send_signal(sig)
    try:
        rest = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        raise
    return proc.returncode, rest


def ok_json(port: int, path: str) -> Any:
    status, body = fetch("GET", f"http://127.0.0.1:{port}{path}")
    assert status == 200, (path, body)
    return json.loads(body)


# -- systemd ----------------------------------------------------------------------------


def unit_entries(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in text.splitlines()  # type: ignore[misc]
            if "=" in line and not line.startswith(("#", ";"))]


def test_the_systemd_unit_verifies_and_its_execstart_serves_and_drains(
        tmp_path: Path) -> None:
    analyze = require("systemd-analyze", "checks deploy/systemd/pubsocket.service")
    # The unit's layout, made here: /srv/pubsocket/{.venv/bin/pubsocket, app}.
    srv = tmp_path / "srv"
    (srv / ".venv" / "bin").mkdir(parents=True)
    (srv / ".venv" / "bin" / "pubsocket").symlink_to(Path(sys.executable).parent / "pubsocket")
    init_project(srv, "app")
    unit = UNIT.read_text().replace("/srv/pubsocket", str(srv))
    (tmp_path / "pubsocket.service").write_text(unit)
    check = subprocess.run([analyze, "verify", str(tmp_path / "pubsocket.service")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    entries = unit_entries(unit)
    values = dict(entries)
    env = dict(e.split("=", 1) for k, e in entries if k == "Environment")
    assert set(env) <= KNOWN, set(env) - KNOWN
    env["PUBSOCKET_PORT"] = str(free_port())  # the unit's 7145 may be taken here
    settings = Settings.from_env(environ=env, env_file=None)
    proc, port = start(shlex.split(values["ExecStart"]), clean_env(**env),
                       Path(values["WorkingDirectory"]))
    assert port == int(env["PUBSOCKET_PORT"])
    assert ok_json(port, "/readyz") == {"status": "ready"}
    stop_budget = float(values["TimeoutStopSec"])
    assert stop_budget >= settings.drain_delay + settings.shutdown_timeout
    began = time.monotonic()
    code, rest = stop(proc, getattr(signal, values["KillSignal"]), stop_budget)
    assert code == 0, rest
    assert f"draining for {settings.drain_delay:.1f}s" in rest
    assert settings.drain_delay <= time.monotonic() - began < stop_budget


# -- Dockerfile ---------------------------------------------------------------------------


def final_stage(commands: tuple[Any, ...]) -> list[Any]:
    starts = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    return list(commands[starts[-1]:])


def test_the_dockerfile_parses_and_its_cmd_and_healthcheck_work(tmp_path: Path) -> None:
    commands = dockerfile.parse_file(str(DOCKERFILE))
    stage = final_stage(commands)
    by = {c.cmd: c for c in stage}
    arg = dict(v.split("=", 1) for c in stage if c.cmd == "ARG" for v in c.value)
    for c in commands:  # every COPY from the build context exists in the repo
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            for source in c.value[:-1]:
                path = re.sub(r"\$\{(\w+)\}", lambda m: arg[m.group(1)], source)
                assert (ROOT / path).exists(), path
    env = dict(zip(by["ENV"].value[::2], by["ENV"].value[1::2], strict=True))
    assert {k for k in env if k.startswith("PUBSOCKET_")} <= KNOWN
    assert by["EXPOSE"].value == (env["PUBSOCKET_PORT"],)
    assert by["USER"].value != ("root",) and by["STOPSIGNAL"].value == ("SIGTERM",)
    assert by["CMD"].json, "exec form, so pubsocket is PID 1 and gets the SIGTERM"
    health = by["HEALTHCHECK"]
    assert health.json and health.value[0] == "CMD"
    # The CMD with the image's ENV, the project at the ARG's default in place of /app.
    cmd = [v.replace("/app", str(ROOT / arg["APP"])) for v in by["CMD"].value]
    port = free_port()
    run_env = clean_env(**{**env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                           "PUBSOCKET_HOST": "127.0.0.1", "PUBSOCKET_PORT": str(port),
                           # the drain itself is the systemd test's
                           "PUBSOCKET_DRAIN_DELAY": "0",
                           "API_KEY": API_KEY, "SECRET": SECRET})
    proc, bound = start(cmd, run_env, tmp_path)
    try:
        assert bound == port
        probe = [sys.executable if v == "python" else v.replace(":7145/", f":{port}/")
                 for v in health.value[1:]]
        assert subprocess.run(probe, timeout=30).returncode == 0
    finally:
        code, rest = stop(proc, signal.SIGTERM, 20)
    assert code == 0, rest


# -- Kubernetes -----------------------------------------------------------------------------


def test_the_kubernetes_manifest_env_and_probes_work(tmp_path: Path, redis_url: str) -> None:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert set(env) | secrets <= KNOWN, (set(env) | secrets) - KNOWN
    assert secrets == {"API_KEY", "SECRET"}
    settings = Settings.from_env(environ=env, env_file=None)
    assert pod["terminationGracePeriodSeconds"] >= (settings.drain_delay
                                                    + settings.shutdown_timeout)
    (port_spec,) = container["ports"]
    assert port_spec["containerPort"] == settings.port
    assert service["spec"]["ports"][0]["targetPort"] == port_spec["name"]
    ready = container["readinessProbe"]["httpGet"]["path"]
    live = container["livenessProbe"]["httpGet"]["path"]
    assert (ready, live) == (settings.ready_path, settings.health_path)
    port = free_port()
    run_env = clean_env(**{**env, "PUBSOCKET_HOST": "127.0.0.1", "PUBSOCKET_PORT": str(port),
                           "PUBSOCKET_BROKER": redis_url, "PUBSOCKET_DRAIN_DELAY": "0",
                           "API_KEY": API_KEY, "SECRET": SECRET})
    proc, _ = start([sys.executable, "-m", "pubsocket", "serve", "examples/chat"],
                    run_env, ROOT)
    try:
        assert ok_json(port, ready) == {"status": "ready"}
        assert ok_json(port, live) == {"status": "ok"}
    finally:
        code, rest = stop(proc, signal.SIGTERM, 20)
    assert code == 0, rest
