"""The code in docs/guides runs as written, against a real server."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pubsocket import App, pubsub
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, make_settings
from tests.deploy.proc import env_of, init_project, run, serving, wait_subscribed

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "never-lose-a-message.md"


def _guide_module(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert code is not None, "the guide lost its client"
    monkeypatch.setenv("PUBSOCKET_URL", url)
    monkeypatch.setenv("TOKEN", API_KEY)
    module = ModuleType("guide_client")
    exec(compile(code.group(1), str(GUIDE), "exec"), module.__dict__)
    return module


async def test_resuming_client_gets_everything_once_across_dropped_connections(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = App(make_settings(rate_limit=0, publish_byte_rate=0))
    pubsub("/ws/chat", app=app, secured=True)
    srv = await serve(app)
    guide = _guide_module(monkeypatch, f"{srv.ws}/ws/chat")
    total = 60
    follower = asyncio.create_task(guide.follow("chatroom", stop_after=total))
    state = srv.server.state
    async with asyncio.timeout(10):
        while app.hub.subscriber_count("chatroom") == 0:
            await asyncio.sleep(0.01)
        for i in range(total):
            await app.hub.publish("chatroom", {"n": i})
            if i % 20 == 10:  # drop every connection abruptly, mid-stream
                for conn in list(state.websockets):
                    conn.abort()
            await asyncio.sleep(0.005)
        seen = await follower
    assert seen == [{"n": i} for i in range(total)]
    assert app.hub.stats.recoveries >= 1 and app.hub.stats.recovery_failures == 0


CHAT = Path(__file__).resolve().parents[2] / "docs" / "guides" / "chat-rooms.md"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


async def test_chat_rooms_guide_permissions_and_member_list(serve: Any) -> None:
    from pubsocket.auth import Authenticator
    from pubsocket.web.decorators import using_app
    from tests.conftest import SECRET

    app_code, member_code = _blocks(CHAT)
    app = App(make_settings())
    with using_app(app):
        exec(compile(app_code, str(CHAT), "exec"), {})
    srv = await serve(app)
    client = ModuleType("guide_member")
    exec(compile(member_code, str(CHAT), "exec"), client.__dict__)
    auth = Authenticator(API_KEY, SECRET)
    claims = {"topics": {"subscribe": ["room:*", "inbox:{sub}"], "publish": ["room:*"],
                         "presence": ["room:*"], "history": ["room:*"]}}

    def token(sub: str, name: str, **extra: Any) -> str:
        return auth.issue(sub, 60, {**claims, "info": {"name": name}, **extra})

    url = f"{srv.ws}/ws/chat"
    alice = asyncio.create_task(client.member(url, token("alice", "Alice"), "room:lobby"))
    async with asyncio.timeout(5):
        while app.hub.subscriber_count("room:lobby") < 1:
            await asyncio.sleep(0.01)
    bob = await client.member(url, token("bob", "Bob"), "room:lobby", say="hi", stay=0.5)
    seen = await alice
    assert bob["members"] == ["Alice", "Bob"]
    assert ("join", "bob") in seen["events"] and ("leave", "bob") in seen["events"]
    assert seen["messages"] == ["hi"] and bob["messages"] == ["hi"]
    refused = await client.member(url, token("carol", "Carol"), "room:ops", stay=0.5)
    assert refused.get("error") == "forbidden"
    staff = await client.member(url, token("dan", "Dan", role="staff"), "room:ops", stay=0.3)
    assert "error" not in staff and staff["members"] == ["Dan"]
    inbox = await client.member(url, token("erin", "Erin"), "inbox:bob", stay=0.5)
    assert inbox.get("error") == "forbidden"


# -- the guides in a fresh `pubsocket init` project, served by `pubsocket serve` --------


def _guide_command(path: Path) -> list[str]:
    """The guide's ``pubsocket token`` command line, as argv after ``pubsocket``."""
    sh = re.search(r"```sh\n(.*?)```", path.read_text(), re.S)
    assert sh is not None, "the guide lost its token command"
    argv = shlex.split(sh.group(1).replace("\\\n", " "))
    assert argv[:2] == ["pubsocket", "token"], argv
    return argv[1:]


def _token_as(project: Path, argv: list[str], sub: str, name: str,
              **extra: Any) -> str:
    """Run the guide's token command for `project`, as `sub` named `name`."""
    args = list(argv)
    args[args.index("--app") + 1] = str(project)
    args[args.index("--sub") + 1] = sub
    claims = json.loads(args[args.index("--claims") + 1])
    claims["info"]["name"] = name
    args[args.index("--claims") + 1] = json.dumps({**claims, **extra})
    done = run(args, project.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_chat_rooms_guide_runs_in_a_fresh_init_project(tmp_path: Path) -> None:
    project = init_project(tmp_path, "mychat")
    app_code, member_code = _blocks(CHAT)
    target = re.search(r"replace `(src/routes/[\w/]+\.py)`", CHAT.read_text())
    assert target is not None, "the guide no longer says which file the app replaces"
    (project / target.group(1)).write_text(app_code)
    argv = _guide_command(CHAT)
    api_key = env_of(project)["API_KEY"]
    client = ModuleType("guide_member_fresh")
    exec(compile(member_code, str(CHAT), "exec"), client.__dict__)
    with serving([str(project), "--port", "0"], cwd=tmp_path) as proc:
        url = f"ws://127.0.0.1:{proc.port}/ws/chat"
        alice = asyncio.create_task(
            client.member(url, _token_as(project, argv, "alice", "Alice"), "room:lobby"))
        await asyncio.to_thread(wait_subscribed, proc.port, api_key)
        bob = await client.member(url, _token_as(project, argv, "bob", "Bob"),
                                  "room:lobby", say="hi", stay=0.5)
        seen = await alice
        refused = await client.member(url, _token_as(project, argv, "carol", "Carol"),
                                      "room:ops", stay=0.3)
        staff = await client.member(url, _token_as(project, argv, "dan", "Dan", role="staff"),
                                    "room:ops", stay=0.3)
        assert "is open" not in proc.read()  # the scaffold's hub is secured
    assert bob["members"] == ["Alice", "Bob"] and bob["messages"] == ["hi"]
    assert seen["messages"] == ["hi"] and ("join", "bob") in seen["events"]
    assert refused.get("error") == "forbidden"
    assert "error" not in staff and staff["members"] == ["Dan"]


async def test_resume_guide_runs_in_a_fresh_init_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = init_project(tmp_path, "myapp")
    api_key = env_of(project)["API_KEY"]
    with serving([str(project), "--port", "0"], cwd=tmp_path) as proc:
        guide = _guide_module(monkeypatch, f"ws://127.0.0.1:{proc.port}/ws/chat")
        monkeypatch.setattr(guide, "TOKEN", api_key)  # the API_KEY from myapp/.env
        total = 20
        follower = asyncio.create_task(guide.follow("chatroom", stop_after=total))
        await asyncio.to_thread(wait_subscribed, proc.port, api_key)
        for i in range(total):
            status, _, body = await ahttp(
                "POST", f"http://127.0.0.1:{proc.port}/api/publish",
                json.dumps({"topic": "chatroom", "data": {"n": i}}).encode(),
                {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
            assert status == 200, body
        async with asyncio.timeout(10):
            seen = await follower
    assert seen == [{"n": i} for i in range(total)]
