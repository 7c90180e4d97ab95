"""Run tests/js/centrifuge_scenarios.mjs (centrifuge-js from npm under Node) as a
subprocess and read what the SDK observed.

`SdkClient` writes JSON commands to the script's stdin and collects its JSON-line events;
`expect` waits (bounded) for the next matching event, so a test reads the SDK's story in
order. Every wait has a timeout and the process is killed when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from pubsocket.hub import Hub
from tests.centrifuge_js.conftest import cf_url
from tests.centrifuge_js.proxy import Proxy, proxy_to
from tests.tools import in_ci, require

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "centrifuge_scenarios.mjs"
NODE_MODULES = JS_DIR / "node_modules"
CENTRIFUGE_DIST = NODE_MODULES / "centrifuge" / "dist" / "centrifuge.js"
WAIT = 8.0  # any single expectation
Event = dict[str, Any]


def require_sdk() -> str:
    """Node's path; fails in CI (skips elsewhere) when Node or the npm packages are missing."""
    node = require("node", "centrifuge-js SDK tests run under Node")
    if not (NODE_MODULES / "centrifuge").is_dir() or not (NODE_MODULES / "ws").is_dir():
        message = ("tests/js/node_modules missing: run "
                   "`npm ci --prefix tests/js --no-audit --no-fund`")
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return node


class SdkClient:
    """One centrifuge-js client in a Node process (see the script's header for the
    command and event vocabulary)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []  # everything seen, in order
        self._taken: set[int] = set()  # indices `expect` returned
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._ids = 0

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        for _ in range(1_000_000):  # bounded: a test sees far fewer lines
            line = await self.proc.stdout.readline()
            if not line:
                break
            self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()

    def send(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    async def expect(self, ev: str, where: Callable[[Event], bool] | None = None,
                     timeout: float = WAIT) -> Event:
        """The oldest event named `ev` (matching `where`) that no earlier `expect`
        returned, waiting for it (bounded); events stay visible in `events`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for i, e in enumerate(self.events):
                        if (i not in self._taken and e["ev"] == ev
                                and (where is None or where(e))):
                            self._taken.add(i)
                            return e
                    if self._reader.done():
                        raise AssertionError(f"node exited before {ev!r}: {self.events}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {ev!r} event within {timeout}s; saw {self.events}") from None

    async def request(self, op: str, channel: str, **fields: Any) -> Event:
        """Send a request command (publish, presence, presence_stats, history) and return
        its result event."""
        self._ids += 1
        rid = self._ids
        self.send(op, channel=channel, id=rid, **fields)
        return await self.expect("result", lambda e: e.get("id") == rid)

    def seen(self, ev: str, where: Callable[[Event], bool] | None = None) -> list[Event]:
        return [e for e in self.events if e["ev"] == ev and (where is None or where(e))]

    def publications(self, channel: str) -> list[Event]:
        return self.seen("publication", lambda e: e["channel"] == channel)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                return (await self.proc.stderr.read()).decode(errors="replace")
        return ""


@contextlib.asynccontextmanager
async def sdk_client(url: str, scenario: str = "client", **args: Any) -> AsyncIterator[SdkClient]:
    """A running centrifuge-js client (not connected yet: send "connect")."""
    node = require_sdk()
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), scenario, url, json.dumps(args),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=str(JS_DIR))
    client = SdkClient(proc)
    try:
        await client.expect("ready", timeout=15.0)
        yield client
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, ConnectionError):
                client.send("exit")
            try:
                async with asyncio.timeout(3.0):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        client._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client._reader


@contextlib.asynccontextmanager
async def sdk_behind_proxy(port: int, **args: Any) -> AsyncIterator[tuple[Proxy, SdkClient]]:
    """A centrifuge-js client (`sdk_client` `args`) of the server at `port` through a
    `proxy_to` proxy the test can cut; "connect" already sent."""
    async with proxy_to(port) as proxy, sdk_client(cf_url(proxy.port), **args) as sdk:
        sdk.send("connect")
        yield proxy, sdk


async def missed_while_cut(proxy: Proxy, sdk: SdkClient, hub: Hub, channel: str,
                           items: Iterable[Any]) -> None:
    """Cut the SDK's network at `proxy` (no close frame: the SDK sees the network go
    away), wait until it says so, publish `items` to `channel` meanwhile, let it back."""
    proxy.cut()
    await sdk.expect("connecting", lambda e: e["code"] != 0)
    for item in items:
        await hub.publish(channel, item)
    proxy.resume()


async def connected_with_one(sdk: SdkClient, hub: Hub, channel: str) -> None:
    """Connect, subscribe to `channel` (recoverable, positioned) and receive ``{"n": 1}``
    published to it: the start of a stream-cut recovery test."""
    sdk.send("connect")
    await sdk.expect("connected")
    sdk.send("sub", channel=channel, opts={"recoverable": True, "positioned": True})
    await sdk.expect("subscribed", lambda e: e["channel"] == channel)
    await hub.publish(channel, {"n": 1})
    await sdk.expect("publication", lambda e: e["data"] == {"n": 1})


async def recovers_one(sdk: SdkClient, hub: Hub, channel: str) -> None:
    """After a cut: the SDK says "connecting", ``{"n": 2}`` is published to `channel`
    while it is away, and it resubscribes recovering that publication."""
    await sdk.expect("connecting")
    await hub.publish(channel, {"n": 2})  # while it is away
    again = await sdk.expect("subscribed", lambda e: e["channel"] == channel)
    assert again["wasRecovering"] is True and again["recovered"] is True, again
    await sdk.expect("publication", lambda e: e["data"] == {"n": 2})
