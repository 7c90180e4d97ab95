"""Finding 8: a cross-site browser upgrade is refused unless its origin is configured
(web/origins.py). Before, an empty `PUBSOCKET_ALLOWED_ORIGINS` meant "any origin": a
page on any site could open a socket to the server as its visitor.

Real servers (native and uvicorn + ASGI), real clients setting ``Origin`` as a browser
would; no ``Origin`` is a non-browser client and stays allowed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, pubsub
from pubsocket.log import refusals
from pubsocket.web.origins import origin_allowed
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, make_settings

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refusal its own log line: `refusals` is process-wide, and a refusal of the
    same kind by an earlier test would otherwise hold this test's line back."""
    monkeypatch.setattr(refusals, "_interval", 0.0)
    monkeypatch.setattr(refusals, "_held", {})  # nothing held back by earlier tests
    monkeypatch.setattr(refusals, "_last", {})


def hub_app(**settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app)
    pubsub("/ws/secure", app=app, secured=True)
    return app


async def refused(url: str, origin: str | None, **kwargs: Any) -> int:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(url, origin=origin, **kwargs):  # type: ignore[arg-type]
            pass
    assert json.loads(info.value.response.body)["error"] == "origin_not_allowed"
    return info.value.response.status_code


async def opens(url: str, origin: str | None = None, **kwargs: Any) -> bool:
    async with connect(url, origin=origin, **kwargs) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"action": "subscribe", "topic": "t"}))
        return True


async def test_cross_site_upgrades_are_refused_by_default(serve_any: Any, caplog: Any) -> None:
    srv = await serve_any(hub_app())
    caplog.set_level(logging.WARNING, "pubsocket.limits")
    url = f"{srv.ws}/ws/chat"
    for origin in ("https://evil.example", "http://127.0.0.1:1", "null",
                   f"http://127.0.0.2:{srv.port}", f"http://127.0.0.1:{srv.port}/x"):
        assert await refused(url, origin) == 403, origin
    # A valid token does not help a cross-site page (the check comes before auth).
    assert await refused(f"{srv.ws}/ws/secure", "https://evil.example",
                         additional_headers=AUTH) == 403
    assert await opens(url)  # no Origin: not a browser
    assert await opens(url, f"http://127.0.0.1:{srv.port}")  # the server's own pages
    assert await opens(url, f"HTTP://127.0.0.1:{srv.port}")
    if srv.kind == "native":  # uvicorn logs its own way; the message is ours here
        assert "limit origin_not_allowed by 127.0.0.1:" in caplog.text


async def test_listed_origins_and_the_star(serve_any: Any) -> None:
    srv = await serve_any(hub_app(allowed_origins=("https://app.example",)))
    url = f"{srv.ws}/ws/chat"
    assert await opens(url, "https://app.example")
    assert await opens(url, f"http://127.0.0.1:{srv.port}")  # same site stays allowed
    assert await refused(url, "https://evil.example") == 403
    anything = await serve_any(hub_app(allowed_origins=("*",)))
    for origin in ("https://evil.example", "null"):
        assert await opens(f"{anything.ws}/ws/chat", origin)


async def test_each_refused_origin_is_logged_once(serve: Any, caplog: Any) -> None:
    """One refusal, one line: the app logs each 403 (`App._dispatch`), the checks that
    raise it do not. Before, the HTTP transports' Origin check logged it and the app
    counted it again, and the connection hook's rule logged it under a second name."""
    app = hub_app()
    pubsub("/connection/websocket", app=app, protocol="centrifuge")  # and POST /emulation
    pubsub("/ws/hook", app=app, authenticate=lambda request: "ann")  # session cookies
    srv = await serve(app)
    caplog.set_level(logging.INFO, "pubsocket")
    evil = {"Origin": "https://evil.example"}
    for name, attempt in [
            ("an upgrade", lambda: refused(f"{srv.ws}/ws/chat", evil["Origin"])),
            ("emulation", lambda: ahttp("POST", f"{srv.http}/emulation", b"{}", evil)),
            ("a stream", lambda: ahttp("POST", f"{srv.http}/ws/chat?transport=http_stream",
                                       b"[]", evil)),
            # the hook's own rule: without an Origin, no session cookie is trusted
            ("a hook's upgrade", lambda: refused(f"{srv.ws}/ws/hook", None)),
            ("a hook's stream", lambda: ahttp(
                "POST", f"{srv.http}/ws/hook?transport=http_stream", b"[]"))]:
        caplog.clear()
        result = await attempt()
        assert (result if isinstance(result, int) else result[0]) == 403, name
        lines = [r.getMessage() for r in caplog.records if r.name == "pubsocket.limits"]
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith("limit origin_not_allowed by 127.0.0.1:"), (name, lines)


def test_origin_policy() -> None:
    host = "chat.example:8443"
    assert origin_allowed(None, host, ())
    assert origin_allowed("https://chat.example:8443", host, ())
    assert origin_allowed("http://Chat.Example:8443", "chat.EXAMPLE:8443", ())  # TLS proxy
    for origin in ("https://chat.example", "https://evil.example", "null", "garbage",
                   "https://chat.example:8443/path", "ftp://chat.example:8443",
                   "https://user@chat.example:8443", "https://[::1"):
        assert not origin_allowed(origin, host, ()), origin
    assert not origin_allowed("https://chat.example:8443", None, ())  # no Host: no site
    assert origin_allowed("null", host, ("null",))
    assert origin_allowed("https://evil.example", host, ("*",))
