"""The seed page's system end to end: its example, its client, websocat, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, spawn

WEBSOCAT = shutil.which("websocat") or str(Path(sys.executable).parent / "websocat")


async def seed_client(uri: str, token: str) -> str:
    """The seed page's client, with `additional_headers` (websockets >= 14)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(uri, additional_headers=headers) as websocket:
        subscribe_msg = json.dumps({"action": "subscribe", "topic": "chatroom"})
        await websocket.send(subscribe_msg)
        publish_msg = json.dumps({"action": "publish", "topic": "chatroom",
                                  "data": {"message": "Hello!"}})
        await websocket.send(publish_msg)
        response: str = await asyncio.wait_for(websocket.recv(), 5)
        return response


@pytest.mark.parametrize("example", ["seed", "chat"])
async def test_seed_client_against_examples(example: str) -> None:
    with spawn(ROOT / "examples" / example) as proc:
        uri = f"ws://localhost:{proc.port}/ws/chat"
        assert json.loads(await seed_client(uri, API_KEY)) == {"message": "Hello!"}
        with pytest.raises(websockets.InvalidStatus) as info:
            await seed_client(uri, "wrong-token")
        assert info.value.response.status_code == 401


def test_websocat_one_liner_against_chat_example() -> None:
    with spawn(ROOT / "examples/chat") as proc:
        lines = (json.dumps({"action": "subscribe", "topic": "room"}) + "\n"
                 + json.dumps({"action": "publish", "topic": "room", "data": {"hi": 1}}) + "\n")
        ws = subprocess.Popen(
            [WEBSOCAT, f"-H=Authorization: Bearer {API_KEY}",
             f"ws://127.0.0.1:{proc.port}/ws/chat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert ws.stdin is not None and ws.stdout is not None
            ws.stdin.write(lines.encode())
            ws.stdin.flush()
            line = ws.stdout.readline()  # bounded: the test timeout kills a hang
            assert json.loads(line) == {"hi": 1}
        finally:
            ws.kill()
            ws.wait(5)
            for stream in (ws.stdin, ws.stdout, ws.stderr):
                if stream:
                    stream.close()


async def test_sigterm_sends_1001_and_exits() -> None:
    with spawn(ROOT / "tests/integration/apps/hub") as proc:
        clients = [await connect(f"ws://127.0.0.1:{proc.port}/ws/chat") for _ in range(5)]
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        # 3 s: slack for a loaded CI box (a server process, SIGTERM, five closes). A
        # server that waits for its handlers before closing them waits for the 10 s
        # shutdown timeout, so it still fails.
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 3.0)
            assert ws.close_code == 1001
        assert time.monotonic() - started < 3.0
        await asyncio.to_thread(proc.popen.wait, 10)
        assert proc.popen.returncode == 0
        for ws in clients:
            await ws.close()


def test_serve_refuses_to_start_without_secrets_for_secured_routes(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pubsocket", "serve", str(ROOT / "examples/chat"),
         "--port", "0"], cwd=tmp_path, env=env, capture_output=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert b"API_KEY" in result.stderr and b"Traceback" not in result.stderr


def readme_client() -> str:
    """The README's Python client, exactly as printed there."""
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```python\n")[1:]
    return next(b.split("```", 1)[0] for b in blocks if "asyncio.run(chat_client())" in b)


@pytest.mark.parametrize("token_from", ["TOKEN", ".env"])
def test_readme_python_client_runs_as_written(tmp_path: Path, token_from: str) -> None:
    (tmp_path / "client.py").write_text(readme_client())
    env = {k: v for k, v in os.environ.items() if k not in ("TOKEN", "API_KEY", "SECRET")}
    if token_from == "TOKEN":
        env["TOKEN"] = API_KEY
    else:
        (tmp_path / ".env").write_text(f"API_KEY={API_KEY}\n")
    with spawn(ROOT / "examples/chat") as server:
        env["PUBSOCKET_URL"] = f"ws://localhost:{server.port}/ws/chat"
        client = subprocess.Popen([sys.executable, "client.py"], cwd=tmp_path, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None
            line = client.stdout.readline()  # bounded by the test timeout
            assert line == 'Received: {"message":"Hello!"}\n' or json.loads(
                line.removeprefix("Received: ")) == {"message": "Hello!"}, line
            client.send_signal(signal.SIGINT)  # "until Ctrl-C"
            assert client.wait(10) == 0
            assert client.stderr is not None and "Traceback" not in client.stderr.read()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(5)
            for stream in (client.stdout, client.stderr):
                if stream:
                    stream.close()
