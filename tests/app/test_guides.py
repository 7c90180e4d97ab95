"""The code in docs/guides runs as written, against a real server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pubsocket import App, pubsub
from tests.conftest import API_KEY, make_settings

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
