"""centrifuge-js in headless Chromium when WebSocket is blocked: the npm package's browser
builds (dist/centrifuge.js, dist/centrifuge.protobuf.js, served by the test's own routes)
behind tests/round_robin_proxy.py, which answers every WebSocket upgrade 403.

Configured with ``[websocket, http_stream, sse]`` the SDK falls back to HTTP-streaming;
with ``http_stream`` or ``sse`` alone it uses that. Each time it connects, subscribes,
publishes (a command POSTed to /emulation), receives, and after `proxy.cut()` reconnects
and recovers every publication it missed exactly once (``recovered: true``, offsets
1..n). Then the same with two nodes on a real Redis: the stream on one node, POSTs on
both, the reconnect on the other. Last, CORS: a page on another origin reaches the
emulation and uni_sse endpoints only when its origin is listed.

One Chromium for the module (its own event loop); each test gets a fresh context.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
import pytest_asyncio

from pubsocket import App
from pubsocket.web import uni_sse
from tests.browser.conftest import launch_chromium
from tests.centrifuge_js.conftest import cf_app, token
from tests.centrifuge_js.harness import CENTRIFUGE_DIST, require_sdk
from tests.conftest import Running, make_settings, serving
from tests.round_robin_proxy import RoundRobinProxy, round_robin_proxy

pytestmark = pytest.mark.asyncio(loop_scope="module")

Serve = Callable[[App], Awaitable[Running]]
Event = dict[str, Any]
CHANNEL = "chat:fb"
WAIT = 10_000  # ms, any single wait in the page
PROTOBUF_DIST = CENTRIFUGE_DIST.with_name("centrifuge.protobuf.js")

# The page records every SDK event in window.events; the test reads them back. With the
# Protobuf build publication data is bytes: the page sends and reads JSON text in them.
PAGE = """<!doctype html><title>centrifuge-js fallback</title>
<script src="/%s"></script>
<script>
window.events = [];
const log = (ev, ctx) => window.events.push({ev, ...ctx});
window.start = (transports, token, protobuf, options) => {
  const enc = (d) => protobuf ? new TextEncoder().encode(JSON.stringify(d)) : d;
  const dec = (d) => protobuf ? JSON.parse(new TextDecoder().decode(d)) : d;
  const c = new Centrifuge(transports, {token, minReconnectDelay: 300,
                                        maxReconnectDelay: 600, timeout: 4000, ...options});
  c.on('connecting', (x) => log('connecting', {code: x.code}));
  c.on('connected', (x) => log('connected', {transport: x.transport}));
  c.on('disconnected', (x) => log('disconnected', {code: x.code}));
  c.on('error', (x) => log('error', {type: x.type}));
  const sub = c.newSubscription('%s', {recoverable: true, positioned: true});
  sub.on('subscribed', (x) => log('subscribed', {recovered: x.recovered,
                                                 wasRecovering: x.wasRecovering}));
  sub.on('publication', (x) => log('publication', {data: dec(x.data),
                                                   offset: Number(x.offset)}));
  sub.subscribe();
  c.connect();
  window.publish = (d) => sub.publish(enc(d)).then(() => 'ok', (e) => 'error ' + e.code);
};
window.uniSse = (url) => {
  const es = new EventSource(url);
  es.onopen = () => log('sse_open', {});
  es.onerror = () => log('sse_error', {});
  es.onmessage = (e) => log('sse', {data: JSON.parse(e.data)});
};
</script>"""


def with_page(app: App) -> App:
    """`app` serving the page (``/`` JSON build, ``/pb`` Protobuf build) and the SDK."""
    builds = {"centrifuge.js": CENTRIFUGE_DIST.read_text(),
              "centrifuge.protobuf.js": PROTOBUF_DIST.read_text()}

    @app.get("/")
    async def page(request: Any, response: Any) -> Any:
        return response(PAGE % ("centrifuge.js", CHANNEL), content_type="text/html")

    @app.get("/pb")
    async def page_pb(request: Any, response: Any) -> Any:
        return response(PAGE % ("centrifuge.protobuf.js", CHANNEL), content_type="text/html")

    @app.get("/{script}")
    async def sdk(request: Any, response: Any) -> Any:
        found = builds.get(request.path_params["script"])
        if found is None:
            return response({"error": "not_found"}, 404)
        return response(found, content_type="text/javascript")

    return app


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Any]:
    require_sdk()
    async with launch_chromium() as instance:
        yield instance


@pytest_asyncio.fixture(loop_scope="module")
async def tab(chromium: Any) -> AsyncIterator[Any]:
    """A page in a fresh browser context (no cache or connections shared between tests)."""
    context = await chromium.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def serve() -> AsyncIterator[Serve]:
    """tests/conftest.py's `serve` on the module's event loop (the browser's)."""
    async with AsyncExitStack() as stack:

        async def start(app: App) -> Running:
            return await stack.enter_async_context(serving(app))

        yield start


def endpoints(base: str, names: list[str]) -> list[dict[str, str]]:
    """centrifuge-js's transport list for `names` at `base` (``http://host:port``)."""
    ws = "ws" + base.removeprefix("http")
    return [{"transport": n, "endpoint": f"{ws if n == 'websocket' else base}/connection/{n}"}
            for n in names]


def seen(events: list[Event], ev: str) -> list[Event]:
    return [e for e in events if e["ev"] == ev]


async def wait(tab: Any, ev: str, n: int) -> None:
    """Until the page has seen `n` events named `ev` (bounded)."""
    await tab.wait_for_function(
        "([ev, n]) => window.events.filter(e => e.ev === ev).length >= n", arg=[ev, n],
        timeout=WAIT)


async def count(tab: Any, ev: str) -> int:
    found: int = await tab.evaluate("ev => window.events.filter(e => e.ev === ev).length", ev)
    return found


async def chat_and_recover(tab: Any, base: str, names: list[str], protobuf: bool,
                           proxy: RoundRobinProxy, publisher: App,
                           before_cut: Callable[[], None] = lambda: None) -> list[Event]:
    """Open the page at `base`, connect over `names`, subscribe, publish from the page and
    from `publisher`'s hub, cut every connection of `proxy`, publish twice while the
    SDK is away, let it recover, publish once more from the page; the page's events."""
    await tab.goto(f"{base}/pb" if protobuf else f"{base}/")
    await tab.evaluate("([t, k, p]) => window.start(t, k, p, {})",
                       [endpoints(base, names), token("alice"), protobuf])
    await wait(tab, "subscribed", 1)
    assert await tab.evaluate("d => window.publish(d)", {"n": 1}) == "ok"
    await wait(tab, "publication", 1)
    await publisher.hub.publish(CHANNEL, {"n": 2})
    await wait(tab, "publication", 2)
    before_cut()
    connecting = await count(tab, "connecting")
    proxy.cut()
    await wait(tab, "connecting", connecting + 1)
    # The SDK waits at least minReconnectDelay (300 ms) before it reconnects: these
    # two are published while it is away, and reach it only by recovery.
    await publisher.hub.publish(CHANNEL, {"n": 3})
    await publisher.hub.publish(CHANNEL, {"n": 4})
    await wait(tab, "subscribed", 2)
    await wait(tab, "publication", 4)
    assert await tab.evaluate("d => window.publish(d)", {"n": 5}) == "ok"
    await wait(tab, "publication", 5)
    events: list[Event] = await tab.evaluate("() => window.events")
    assert [(s["wasRecovering"], s["recovered"]) for s in seen(events, "subscribed")] == [
        (False, False), (True, True)], events
    pubs = seen(events, "publication")
    assert [p["offset"] for p in pubs] == [1, 2, 3, 4, 5], events  # each exactly once
    assert [p["data"] for p in pubs] == [{"n": n} for n in range(1, 6)], events
    return events


MODES = [(["websocket", "http_stream", "sse"], False), (["http_stream"], False),
         (["sse"], False), (["websocket", "http_stream"], True)]
IDS = ["ws-http_stream-sse", "http_stream", "sse", "ws-http_stream-protobuf"]


def expected_transport(names: list[str]) -> str:
    return next(n for n in names if n != "websocket")


@pytest.mark.parametrize(("names", "protobuf"), MODES, ids=IDS)
async def test_falls_back_and_recovers(serve: Serve, tab: Any, names: list[str],
                                       protobuf: bool) -> None:
    srv = await serve(with_page(cf_app()))
    async with round_robin_proxy([srv.port], refuse_websocket=True) as proxy:
        events = await chat_and_recover(tab, f"http://127.0.0.1:{proxy.port}", names,
                                        protobuf, proxy, srv.app)
    want = expected_transport(names)
    assert [c["transport"] for c in seen(events, "connected")] == [want, want], events
    if "websocket" in names:  # it did try the WebSocket first, and was refused
        assert proxy.refused >= 1
    else:
        assert proxy.refused == 0
    assert len(proxy.backends_of(b"POST /emulation")) >= 3  # subscribe + 2 publishes


def stream_request(name: str) -> bytes:
    return b"POST /connection/http_stream" if name == "http_stream" else b"GET /connection/sse"


NODE_MODES = [(["websocket", "http_stream", "sse"], False), (["sse"], False),
              (["http_stream"], True)]
NODE_IDS = ["ws-http_stream-sse", "sse", "http_stream-protobuf"]


@pytest.mark.parametrize(("names", "protobuf"), NODE_MODES, ids=NODE_IDS)
async def test_two_nodes_behind_a_round_robin_proxy(serve: Serve, tab: Any, redis_url: str,
                                                   names: list[str], protobuf: bool) -> None:
    """The stream on one node, the SDK's POSTs on both (relayed through Redis), the
    reconnect on the other node, which recovers from Redis's history."""
    broker = f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"
    a = await serve(with_page(cf_app(broker=broker)))
    b = await serve(with_page(cf_app(broker=broker)))
    want = expected_transport(names)
    async with round_robin_proxy([a.port, b.port], refuse_websocket=True) as proxy:

        def next_node() -> None:  # the reconnect lands on the node not holding the stream
            proxy.turn = 1 - proxy.backends_of(stream_request(want))[0]

        events = await chat_and_recover(tab, f"http://127.0.0.1:{proxy.port}", names,
                                        protobuf, proxy, a.app, next_node)
    assert [c["transport"] for c in seen(events, "connected")] == [want, want], events
    home, away = proxy.backends_of(stream_request(want))
    assert away == 1 - home, proxy.routed
    posts = proxy.backends_of(b"POST /emulation")
    assert 0 in posts and 1 in posts, proxy.routed  # some POSTs were routed via Redis
    sent = a.app.hub.relay.stats.sent + b.app.hub.relay.stats.sent
    routed = a.app.hub.relay.stats.fed_routed + b.app.hub.relay.stats.fed_routed
    assert sent >= 1 and routed == sent


async def cross_origin(serve: Serve, tab: Any, listed: bool) -> tuple[str, Running]:
    """A page on origin A (its own server) and the Centrifuge server B, which lists A in
    ``allowed_origins`` when `listed`; B's base URL."""
    page = await serve(with_page(App(make_settings())))
    origin = f"http://127.0.0.1:{page.port}"
    server = cf_app(allowed_origins=(origin,) if listed else ())
    uni_sse("/connection/uni_sse", app=server, secured=True)
    srv = await serve(server)
    await tab.goto(f"{origin}/")
    return f"http://127.0.0.1:{srv.port}", srv


def uni_sse_url(base: str) -> str:
    connect = orjson.dumps({"token": token("alice"), "subs": {CHANNEL: {}}}).decode()
    return f"{base}/connection/uni_sse?cf_connect={connect}"


@pytest.mark.parametrize("name", ["http_stream", "sse"])
async def test_a_page_on_a_listed_origin(serve: Serve, tab: Any, name: str) -> None:
    """Cross-origin: the stream, the preflighted POSTs to /emulation and a uni_sse
    EventSource all work when the page's origin is in ``allowed_origins``."""
    base, srv = await cross_origin(serve, tab, listed=True)
    await tab.evaluate("([t, k, o]) => window.start(t, k, false, o)",
                       [endpoints(base, [name]), token("alice"),
                        {"emulationEndpoint": f"{base}/emulation"}])
    await wait(tab, "subscribed", 1)
    assert await tab.evaluate("d => window.publish(d)", {"n": 1}) == "ok"
    await wait(tab, "publication", 1)
    await tab.evaluate("u => window.uniSse(u)", uni_sse_url(base))
    await wait(tab, "sse", 2)  # the connect and subscribe pushes
    await srv.app.hub.publish(CHANNEL, {"n": 2})
    await wait(tab, "publication", 2)
    await tab.wait_for_function(
        "() => window.events.some(e => e.ev === 'sse' && e.data.pub)", timeout=WAIT)
    events: list[Event] = await tab.evaluate("() => window.events")
    assert [c["transport"] for c in seen(events, "connected")] == [name], events
    assert [p["data"] for p in seen(events, "publication")] == [{"n": 1}, {"n": 2}]


async def test_a_page_on_another_origin_is_refused(serve: Serve, tab: Any) -> None:
    """Not listed: the SDK never connects (each transport fails, it keeps retrying) and a
    uni_sse EventSource fails; a preflighted POST to /emulation is blocked."""
    base, _ = await cross_origin(serve, tab, listed=False)
    await tab.evaluate("([t, k, o]) => window.start(t, k, false, o)",
                       [endpoints(base, ["http_stream", "sse"]), token("alice"),
                        {"emulationEndpoint": f"{base}/emulation"}])
    await tab.evaluate("u => window.uniSse(u)", uni_sse_url(base))
    await wait(tab, "sse_error", 1)
    await wait(tab, "error", 2)  # both transports failed
    blocked = await tab.evaluate(
        """u => fetch(u, {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: '{}'}).then(r => 'status ' + r.status, e => e.name)""",
        f"{base}/emulation")
    events: list[Event] = await tab.evaluate("() => window.events")
    assert blocked == "TypeError", blocked  # the preflight failed: no response to read
    assert not seen(events, "connected") and not seen(events, "sse"), events
    assert not seen(events, "sse_open"), events
