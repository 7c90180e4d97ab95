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
    app = App(make_settings(rate_limit=0))
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
