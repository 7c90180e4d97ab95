"""The ASGI adapter under real uvicorn: beyond the `serve_any` tests in tests/app, the
hub, handlers that finish, the size limit without uvicorn's help, and the one-command
``uvicorn --factory pubsocket.asgi:from_env`` on a project folder (with SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, Settings, Websocket, load_app, pubsub
from tests.conftest import API_KEY, SECRET, free_port, make_settings
from tests.integration.spawn import ROOT
from tests.transports import Uvicorn

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def wait_for_no_calls(server: Uvicorn, within: float = 3.0) -> None:
    """Bounded wait until every ASGI application call has returned."""
    async with asyncio.timeout(within):
        while server.running_calls():
            await asyncio.sleep(0.01)


async def test_app_runs_under_uvicorn() -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)

    @app.get("/hello/{name}")
    async def hello(request: Any, response: Any) -> Any:
        return response({"hello": request.params["name"]})

    server = await Uvicorn(app).start()
    try:
        def get() -> Any:
            url = f"http://127.0.0.1:{server.port}/hello/asgi"
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())

        assert await asyncio.to_thread(get) == {"hello": "asgi"}
        url = f"ws://127.0.0.1:{server.port}/ws/chat"
        async with connect(url, additional_headers=AUTH) as a, \
                connect(url, additional_headers=AUTH, subprotocols=["pubsocket.v1"]) as b:  # type: ignore[list-item]
            await a.send(json.dumps({"action": "subscribe", "topic": "room"}))
            await b.send(json.dumps({"action": "subscribe", "topic": "room", "id": 1}))
            ack = json.loads(await b.recv())
            assert (ack["type"], ack["id"], ack["topic"], ack["offset"]) == ("ack", 1, "room", 0)
            await b.send(json.dumps({"action": "publish", "topic": "room", "data": {"x": 1}}))
            assert json.loads(await asyncio.wait_for(a.recv(), 5)) == {"x": 1}
            assert json.loads(await asyncio.wait_for(b.recv(), 5)) == {
                "type": "message", "topic": "room", "offset": 1, "data": {"x": 1}}
        await wait_for_no_calls(server)  # push-mode sessions end with their peers
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 401
    finally:
        await server.shutdown()


async def test_low_level_handlers_finish_when_the_peer_leaves() -> None:
    # The README's /ws/echo handler and the seed page's handler, under uvicorn.
    app = load_app(ROOT / "examples/seed", make_settings())

    @app.get("/ws/echo")
    async def echo(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        async for message in ws:
            await ws.send(message)

    server = await Uvicorn(app).start()
    try:
        base = f"ws://127.0.0.1:{server.port}"
        async with connect(f"{base}/ws/echo") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        async with connect(f"{base}/ws/chat", additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"action": "subscribe", "topic": "t"}))
            await ws.send(json.dumps({"action": "publish", "topic": "t", "data": 1}))
            assert await ws.recv() == "1"
        await wait_for_no_calls(server)
        assert app.open_connections() == 0
    finally:
        await server.shutdown()


async def test_oversized_message_is_1009_even_with_uvicorns_own_limit_higher() -> None:
    # uvicorn's default ws_max_size is 16 MiB: the adapter still refuses 1 MiB + 1.
    app = App(make_settings())
    pubsub("/ws/chat", app=app)
    server = await Uvicorn(app, server_limits=False).start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws/chat", max_size=None) as ws:
            await ws.send("x" * (2 * 1024 * 1024))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)  # not a bad_json reply
        assert ws.close_code == 1009
    finally:
        await server.shutdown()


def test_from_folder_reads_the_folders_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "app"
    shutil.copytree(ROOT / "examples/seed", folder)
    (folder / ".env").write_text("API_KEY=from-the-folder\nSECRET=s3cret-of-the-folder\n")
    monkeypatch.chdir(tmp_path)
    for name in ("API_KEY", "SECRET", "PUBSOCKET_API_KEY", "PUBSOCKET_SECRET"):
        monkeypatch.delenv(name, raising=False)
    from pubsocket import ASGIApp
    asgi = ASGIApp.from_folder(folder)
    assert (asgi.app.settings.api_key, asgi.app.settings.secret) == (
        "from-the-folder", "s3cret-of-the-folder")
    given = ASGIApp.from_folder(folder, Settings(api_key="given"))
    assert given.app.settings.api_key == "given"


def readme_uvicorn_command() -> tuple[dict[str, str], list[str]]:
    """The README's ``PUBSOCKET_APP=... .venv/bin/uvicorn --factory ...`` line, split into
    its variable assignments and its argv (with this venv's uvicorn)."""
    readme = (ROOT / "README.md").read_text()
    line = next(ln.strip() for ln in readme.splitlines()
                if "uvicorn --factory pubsocket.asgi:from_env" in ln)
    words = shlex.split(line)
    assigns = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    argv = [w for w in words if w.split("=", 1)[0] not in assigns]
    assert argv[0] == ".venv/bin/uvicorn"
    return assigns, [str(Path(sys.executable).parent / "uvicorn"), *argv[1:]]


def _clean_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PUBSOCKET_") and k not in ("API_KEY", "SECRET", "CI")}
    return {**env, **changes}


async def test_readme_uvicorn_command_serves_a_folder_and_exits_on_sigterm() -> None:
    port = free_port()
    # The README's one command, as a user runs it from the repo (default ws implementation).
    assigns, argv = readme_uvicorn_command()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; waits go through to_thread
        [*argv, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=_clean_env(**assigns, API_KEY=API_KEY, SECRET=SECRET,
                       PYTHONWARNINGS="ignore::DeprecationWarning"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        client = None
        while client is None:
            try:
                client = await connect(f"ws://127.0.0.1:{port}/ws/chat", additional_headers=AUTH)
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "uvicorn did not start"
                await asyncio.sleep(0.1)
        await client.send(json.dumps({"action": "subscribe", "topic": "chatroom"}))
        await client.send(json.dumps({"action": "publish", "topic": "chatroom",
                                      "data": {"message": "Hello!"}}))
        assert json.loads(await asyncio.wait_for(client.recv(), 5)) == {"message": "Hello!"}
        # A connected client's handler is blocked in receive(): SIGTERM must still end it.
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
        # uvicorn re-raises the captured SIGTERM once it has shut down cleanly.
        assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGTERM
        assert time.monotonic() - started < 4  # the native server needs ~2 s at most
        output = proc.communicate()[0].decode(errors="replace")
        assert "Application shutdown complete" in output
        assert "Finished server process" in output
        assert "Waiting for background tasks" not in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
