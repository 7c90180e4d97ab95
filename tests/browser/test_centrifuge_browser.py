"""centrifuge-js in headless Chromium: the npm package's browser build (served by the
test's own route, no CDN) connects with a JWT, subscribes, publishes, receives, and
recovers what it missed while a proxy cut its network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.centrifuge_js.conftest import cf_app, cf_url, token
from tests.centrifuge_js.harness import CENTRIFUGE_DIST, require_sdk
from tests.centrifuge_js.proxy import proxy_to

# The page records every SDK event in window.events; the test reads them back.
PAGE = """<!doctype html><title>centrifuge-js</title>
<script src="/centrifuge.js"></script>
<script>
window.events = [];
const log = (ev, ctx) => window.events.push({ev, ...ctx});
window.start = (url, token) => {
  const c = new Centrifuge(url, {token, minReconnectDelay: 50,
                                maxReconnectDelay: 300, timeout: 3000});
  c.on('connecting', (x) => log('connecting', {code: x.code}));
  c.on('connected', (x) => log('connected', {client: x.client}));
  c.on('disconnected', (x) => log('disconnected', {code: x.code}));
  const sub = c.newSubscription('chat:web', {recoverable: true, positioned: true});
  sub.on('subscribed', (x) => log('subscribed', {recovered: x.recovered,
                                                 wasRecovering: x.wasRecovering}));
  sub.on('publication', (x) => log('publication', {data: x.data, offset: x.offset}));
  sub.subscribe();
  c.connect();
  window.sub = sub;
};
</script>"""


def count(ev: str) -> str:
    return f"n => window.events.filter(e => e.ev === '{ev}').length >= n"


async def test_centrifuge_js_in_chromium(serve: Any, browser: Any, output_dir: Path) -> None:
    require_sdk()
    app = cf_app()
    script = CENTRIFUGE_DIST.read_text()

    @app.get("/")
    async def page(request: Any, response: Any) -> Any:
        return response(PAGE, content_type="text/html")

    @app.get("/centrifuge.js")
    async def sdk(request: Any, response: Any) -> Any:
        return response(script, content_type="text/javascript")

    srv = await serve(app)
    async with proxy_to(srv.port) as proxy:
        tab = await browser.new_page()
        # The page comes through the proxy too, so its socket is same-site (the server
        # refuses cross-site upgrades by default; web/origins.py).
        await tab.goto(f"http://127.0.0.1:{proxy.port}/")
        await tab.evaluate("([u, t]) => window.start(u, t)",
                           [cf_url(proxy.port), token("alice")])
        await tab.wait_for_function(count("subscribed"), arg=1, timeout=8000)
        await tab.evaluate("() => window.sub.publish({from: 'page'})")
        await tab.wait_for_function(count("publication"), arg=1, timeout=8000)
        proxy.cut()
        await tab.wait_for_function(count("connecting"), arg=2, timeout=8000)
        await app.hub.publish("chat:web", {"from": "server", "n": 1})
        await app.hub.publish("chat:web", {"from": "server", "n": 2})
        proxy.resume()
        await tab.wait_for_function(count("publication"), arg=3, timeout=8000)
        events: list[dict[str, Any]] = await tab.evaluate("() => window.events")
        await tab.screenshot(path=str(output_dir / "centrifuge.png"))
    subs = [e for e in events if e["ev"] == "subscribed"]
    assert [(s["wasRecovering"], s["recovered"]) for s in subs] == [(False, False),
                                                                     (True, True)], events
    pubs = [e for e in events if e["ev"] == "publication"]
    assert [p["offset"] for p in pubs] == [1, 2, 3], events
    assert [p["data"] for p in pubs] == [{"from": "page"}, {"from": "server", "n": 1},
                                         {"from": "server", "n": 2}]
