"""Node's `eventsource` 2.x (npm) reads /connection/uni_sse without losing the first
event: it drops an event that shares a chunk with a leading CRLF, and the server sends
none (the body starts with the connect event)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.centrifuge_js.harness import JS_DIR, NODE_MODULES
from tests.sse.client import query
from tests.sse.test_uni_sse import sse_app
from tests.tools import in_ci, require

SCRIPT = JS_DIR / "uni_sse_eventsource.mjs"


def require_eventsource() -> str:
    node = require("node", "the eventsource test runs under Node")
    if not (NODE_MODULES / "eventsource").is_dir():
        message = "tests/js/node_modules missing: run `npm ci --prefix tests/js`"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return node


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 8)
    assert line, "the Node client exited"
    event: dict[str, Any] = json.loads(line)
    return event


async def test_node_eventsource_gets_the_first_event(serve: Any) -> None:
    node = require_eventsource()
    srv = await serve(sse_app())
    url = f"http://127.0.0.1:{srv.port}{query({'news': {}})}"
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    try:
        first = await _line(proc)
        assert "connect" in first["data"], first  # not lost to the trap
        sub = await _line(proc)
        assert sub["data"]["subscribe"]["recoverable"] and sub["id"]
        await srv.app.hub.publish("news", {"n": 1})
        pub = await _line(proc)
        while "pub" not in pub["data"]:
            pub = await _line(proc)
        assert pub["data"]["pub"]["data"] == {"n": 1} and pub["id"].endswith(":" + (
            sub["data"]["subscribe"]["epoch"]))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
