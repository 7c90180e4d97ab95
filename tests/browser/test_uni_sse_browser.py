"""A plain browser `EventSource` on /connection/uni_sse (headless Chromium): while a
proxy cuts its network, messages are published; the EventSource reconnects by itself
with ``Last-Event-ID`` and receives exactly the missed messages, once each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pubsocket.web import uni_sse
from tests.centrifuge_js.conftest import cf_app, token
from tests.centrifuge_js.proxy import proxy_to

PAGE = """<!doctype html><title>uni_sse</title>
<script>
window.events = [];
window.opens = 0;
window.start = (connect) => {
  const url = new URL('/connection/uni_sse', location.href);
  url.searchParams.set('cf_connect', connect);
  const es = new EventSource(url);
  es.onopen = () => { window.opens += 1; };
  es.onmessage = (e) => window.events.push({data: JSON.parse(e.data), id: e.lastEventId});
};
</script>"""


def pubs(events: list[dict[str, Any]]) -> list[Any]:
    return [e["data"]["pub"]["data"] for e in events if "pub" in e["data"]]


async def test_event_source_resumes_with_last_event_id(serve: Any, browser: Any,
                                                        output_dir: Path) -> None:
    app = cf_app()
    uni_sse("/connection/uni_sse", app=app, secured=True)

    @app.get("/")
    async def page(request: Any, response: Any) -> Any:
        return response(PAGE, content_type="text/html")

    srv = await serve(app)
    connect = orjson.dumps({"token": token("alice"), "subs": {"chat:sse": {}, "other": {}}})
    n_pubs = "n => window.events.filter(e => e.data.pub).length >= n"
    async with proxy_to(srv.port) as proxy:
        tab = await browser.new_page()
        await tab.goto(f"http://127.0.0.1:{proxy.port}/")
        await tab.evaluate("c => window.start(c)", connect.decode())
        await tab.wait_for_function(
            "() => window.events.filter(e => e.data.subscribe).length >= 2", timeout=8000)
        await app.hub.publish("chat:sse", {"n": 1})
        await tab.wait_for_function(n_pubs, arg=1, timeout=8000)
        proxy.cut()  # the network drops: the EventSource retries by itself
        for n in (2, 3):
            await app.hub.publish("chat:sse", {"n": n})
        await app.hub.publish("other", {"n": 10})
        proxy.resume()
        await tab.wait_for_function(n_pubs, arg=4, timeout=15000)
        await app.hub.publish("chat:sse", {"n": 4})  # live after the resume
        await tab.wait_for_function(n_pubs, arg=5, timeout=8000)
        events: list[dict[str, Any]] = await tab.evaluate("() => window.events")
        opens: int = await tab.evaluate("() => window.opens")
        await tab.screenshot(path=str(output_dir / "uni_sse.png"))
    assert opens == 2, events
    assert sorted(pubs(events), key=lambda d: d["n"]) == [
        {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 10}], events
    assert len(pubs(events)) == 5  # nothing twice
    subscribes = [e["data"] for e in events if "subscribe" in e["data"]]
    assert [s["subscribe"].get("recovered") for s in subscribes] == [None, None, True, True]
    last = events[-1]["id"]
    assert last.endswith(f";4:{subscribes[0]['subscribe']['epoch']};1:"
                         f"{subscribes[1]['subscribe']['epoch']}")
