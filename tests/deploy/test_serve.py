"""`pubsocket init` and `pubsocket serve` as a new user meets them: a secured hub and a
.gitignore, one line for a port in use, a sync handler named at load time, the
access log (off by default; never a query string or a token), and each startup line
said once per serving process."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.app.test_http import ahttp
from tests.conftest import free_port
from tests.deploy.proc import ROOT, env_of, init_project, run, serving


def test_init_keeps_the_env_out_of_git(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    assert (project / ".gitignore").read_text().splitlines()[1] == ".env"
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not found (the .gitignore content is checked above)")
    subprocess.run([git, "init", "-q", str(project)], check=True, timeout=30)
    status = subprocess.run([git, "-C", str(project), "status", "--porcelain",
                             "--untracked-files=all"], capture_output=True, text=True,
                            check=True, timeout=30).stdout
    assert ".env" not in status.split() and "src/routes/hub.py" in status


async def test_the_scaffolded_hub_is_secured_and_claims_limit_it(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    token = run(["token", "--app", str(project), "--sub", "alice", "--claims",
                 '{"topics": {"publish": ["room:*"], "subscribe": ["room:*"]}}'], tmp_path)
    assert token.returncode == 0, token.stderr
    with serving([str(project), "--port", "0"], cwd=tmp_path) as proc:
        url = f"ws://127.0.0.1:{proc.port}/ws/chat"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, subprotocols=["pubsocket.v1"]):
                pass
        assert refused.value.response.status_code == 401
        offer = ["pubsocket.v1", "bearer", token.stdout.strip()]
        async with websockets.connect(url, subprotocols=offer) as ws:  # type: ignore[arg-type]
            for n, topic in enumerate(["secret:payroll", "room:lobby"]):
                await ws.send(json.dumps({"action": "publish", "topic": topic,
                                          "id": str(n), "data": 1}))
            replies = {r["id"]: r for r in [json.loads(await ws.recv()) for _ in range(2)]}
        assert replies["0"]["code"] == "forbidden" and replies["1"]["type"] == "ack"
        assert "is open" not in proc.read()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, workers: int,
                                              redis_url: str) -> None:
    project = init_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve", str(project), "--port", str(port), "--workers", str(workers)],
                   tmp_path, PUBSOCKET_BROKER=redis_url)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"pubsocket: port {port} on 127.0.0.1 is already in use (stop "
                           f"the other server or pick another port with --port or PORT)\n")
    assert done.stdout == ""


def test_a_sync_handler_is_refused_at_load_time_by_name(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    (project / "src" / "routes" / "sync.py").write_text(
        "from pubsocket import get\n\n\n@get('/now')\ndef now(request, response):\n"
        "    return response({'now': 1})\n")
    done = run(["serve", str(project), "--port", "0"], tmp_path, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == ("pubsocket: the handler now for GET /now must be `async def` "
                           "(route functions run on the event loop)\n")


async def test_the_access_log_is_off_by_default_and_one_setting_turns_it_on(
        tmp_path: Path) -> None:
    project = init_project(tmp_path)
    key = env_of(project)["API_KEY"]
    lines: dict[bool, str] = {}
    for on in (False, True):
        env = {"PUBSOCKET_ACCESS_LOG": "true"} if on else {}
        with serving([str(project), "--port", "0"], cwd=tmp_path, **env) as proc:
            status, _, _ = await ahttp("GET", f"http://127.0.0.1:{proc.port}/hello/ann"
                                       f"?token=SECRETQUERY")
            assert status == 200
            url = f"ws://127.0.0.1:{proc.port}/ws/chat"
            with pytest.raises(InvalidStatus):
                async with websockets.connect(url, additional_headers={
                        "Authorization": "Bearer BADTOKEN"}):
                    pass
            async with websockets.connect(url, additional_headers={
                    "Authorization": f"Bearer {key}"}) as ws:
                await ws.send("{}")
            await asyncio.sleep(0.3)  # the close line comes when the server sees the FIN
            lines[on] = "\n".join(x for x in proc.read().splitlines()
                                  if "pubsocket.access" in x)
    assert lines[False] == ""
    log = lines[True]
    peer = r"127\.0\.0\.1:\d+"
    assert re.search(rf"GET /hello/ann 200 [\d.]+ms {peer}$", log, re.M), log
    assert re.search(rf"GET /ws/chat 401 [\d.]+ms {peer}$", log, re.M), log
    assert re.search(rf"GET /ws/chat 101 [\d.]+ms {peer}$", log, re.M), log
    assert re.search(rf"ws /ws/chat closed 1000 [\d.]+s {peer}$", log, re.M), log
    for secret in ("SECRETQUERY", "BADTOKEN", key, "?"):
        assert secret not in log


@pytest.mark.parametrize("workers", [1, 2])
def test_the_route_files_run_once_per_serving_process(tmp_path: Path, workers: int,
                                                     redis_url: str) -> None:
    """`serve` checks the app it loaded before binding, then serves that same app: the
    route files' module code and the config file's mount log run once per process that
    serves (with --workers 2: twice, not once more in the parent)."""
    project = init_project(tmp_path)
    (project / "src" / "routes" / "said.py").write_text(
        "print('route file ran', flush=True)\n")
    config = ROOT / "tests" / "centrifuge" / "upstream_config.json"
    port = free_port() if workers > 1 else 0  # workers need a fixed port
    with serving([str(project), "--port", str(port), "--workers", str(workers)],
                 cwd=tmp_path, PUBSOCKET_CENTRIFUGO_CONFIG=str(config),
                 PUBSOCKET_BROKER=redis_url) as proc:
        # every worker loads its app, then logs "listening" (worker 0 also the banner)
        proc.wait_for("(?s)" + "listening on.*" * workers)
        out = proc.read()
    assert out.count("route file ran") == workers, out
    assert out.count("replaces what the app's pubsub() mounted") == workers, out
    assert out.count("not supported, ignored: log") == 1, out  # read with the settings
    assert out.count("pubsocket serving on") == 1, out


def test_the_banner_names_only_the_hub_endpoints_the_app_has(tmp_path: Path) -> None:
    """The WebSocket and websocat lines name each `pubsub()` endpoint at its own path,
    and an app without one (examples/echo) gets its token but no `/ws/chat` hint."""
    project = init_project(tmp_path)
    (project / "src" / "routes" / "hub.py").write_text(
        "from pubsocket import pubsub\n\npubsub('/live', secured=True)\n"
        "pubsub('/cf', protocol='centrifuge', secured=True)\n")
    with serving([str(project), "--port", "0"], cwd=tmp_path) as proc:
        proc.wait_for(r"Try: .*\n")
        banner = proc.read()
    base = f"127.0.0.1:{proc.port}"
    assert f"  WebSocket: ws://{base}/live\n" in banner, banner
    assert re.search(rf"  Try: +websocat -H='Authorization: Bearer [\w.-]+' ws://{base}/live\n",
                     banner), banner
    assert f"  Centrifuge: ws://{base}/cf\n" in banner, banner
    assert "/ws/chat" not in banner and "/connection/websocket" not in banner, banner
    key, secret = "k" * 32, "s" * 40
    with serving([str(ROOT / "examples" / "echo"), "--port", "0"], cwd=tmp_path,
                 API_KEY=key, SECRET=secret) as proc:
        proc.wait_for(r"Token: .*\n")
        banner = proc.read()
    assert "/ws/chat" not in banner and "WebSocket:" not in banner and "Try:" not in banner
