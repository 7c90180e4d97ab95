"""Per-client HTTP budgets, /metrics access and the default security headers (issue 15).

Native and ASGI (`serve_any`): these live in the app, so both transports apply them.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from pubsocket import App, load_app, pubsub
from pubsocket.log import Throttled
from tests.app.test_http import ahttp
from tests.attack.harness import token
from tests.conftest import API_KEY, make_settings

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"
KEY = {"Authorization": f"Bearer {API_KEY}"}


def api_app(**changes: Any) -> App:
    app = App(make_settings(**changes))
    pubsub("/ws/chat", app=app, secured=True)
    return app


async def keep_alive_posts(port: int, bodies: list[bytes], auth: str
                           ) -> list[tuple[int, dict[str, str], bytes]]:
    """POST each body to /api/publish on ONE keep-alive connection, in turn."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for body in bodies:
            writer.write(f"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                         f"\r\n".encode() + body)
            async with asyncio.timeout(5):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                answer = await reader.readexactly(int(headers["content-length"]))
            answers.append((int(lines[0].split()[1]), headers, answer))
    finally:
        writer.close()
    return answers


async def test_publish_over_the_budget_is_429_with_retry_after_and_keeps_the_connection(
        serve: Any) -> None:
    running = await serve(api_app(http_rate_limit=0.5, http_rate_burst=3))
    body = orjson.dumps({"topic": "room:a", "data": {"x": 1}})
    answers = await keep_alive_posts(running.port, [body] * 5,
                                     f"Bearer {token('flooder')}")
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    _, headers, raw = answers[3]
    assert orjson.loads(raw)["error"] == "rate_limited"
    assert headers["retry-after"] == "2"  # a token every 2 s
    assert headers["connection"] == "keep-alive"
    # The budget is the client's own: another principal still publishes.
    other = await keep_alive_posts(running.port, [body], f"Bearer {token('bystander')}")
    assert other[0][0] == 200


async def test_token_routes_share_the_budget_under_asgi_too(serve_any: Any) -> None:
    running = await serve_any(api_app(http_rate_limit=0.5, http_rate_burst=2))
    auth = {"Authorization": f"Bearer {token('reader')}"}
    statuses = []
    for _ in range(3):
        status, headers, _ = await ahttp("GET", running.http + "/api/history?topic=room:a",
                                         headers=auth)
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "2"


async def test_bad_tokens_spend_the_address_budget_then_429_unverified(
        serve_any: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh throttle: the process-wide one may have logged this kind a moment ago
    # (the app logs a 401 through `pubsocket.log.unauthorized`).
    monkeypatch.setattr("pubsocket.log.refusals",
                        Throttled(logging.getLogger("pubsocket.limits")))
    running = await serve_any(api_app(auth_failure_limit=0.1, auth_failure_burst=3))
    body = orjson.dumps({"topic": "room:a", "data": 1})
    statuses = []
    with caplog.at_level(logging.WARNING, "pubsocket.limits"):
        for _ in range(5):
            status, _, _ = await ahttp("POST", running.http + "/api/publish", body,
                                       {"Authorization": "Bearer not-a-token"})
            statuses.append(status)
        # A valid token from that address is refused too until the budget refills.
        status, _, raw = await ahttp("POST", running.http + "/api/publish", body, KEY)
    assert statuses == [401, 401, 401, 429, 429]
    assert status == 429 and orjson.loads(raw)["error"] == "rate_limited"
    lines = [r.getMessage() for r in caplog.records if r.name == "pubsocket.limits"]
    assert any("invalid_token by 127.0.0.1" in line for line in lines)
    assert not any("not-a-token" in line for line in lines)


@pytest.mark.parametrize("public", [False, True])
async def test_metrics_need_the_api_key_unless_public(serve_any: Any, public: bool) -> None:
    running = await serve_any(api_app(metrics_public=public))
    user = {"Authorization": f"Bearer {token('alice')}"}
    without, _, _ = await ahttp("GET", running.http + "/metrics")
    as_user, _, _ = await ahttp("GET", running.http + "/metrics", headers=user)
    with_key, _, text = await ahttp("GET", running.http + "/metrics", headers=KEY)
    assert with_key == 200 and b"pubsocket_connections" in text
    assert (without, as_user) == ((200, 200) if public else (401, 403))


def page_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def test_every_page_sends_the_security_headers(serve_any: Any) -> None:
    app = load_app(CHAT, make_settings())
    running = await serve_any(app)
    for path in ("/", "/index.html", "/app.js", "/style.css", "/admin", "/admin/admin.js"):
        status, raw, _ = await ahttp("GET", running.http + path)
        headers = page_headers(raw)
        assert status == 200, path
        assert "frame-ancestors" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"], path
        assert headers["x-frame-options"] in ("DENY", "SAMEORIGIN"), path
    # The demo page and its files are static: the full same-origin policy.
    _, raw, _ = await ahttp("GET", running.http + "/")
    assert "script-src 'self'" in page_headers(raw)["content-security-policy"]
    # /admin keeps its own stricter policy (a response's own headers win).
    _, raw, _ = await ahttp("GET", running.http + "/admin")
    assert page_headers(raw)["x-frame-options"] == "DENY"
    # JSON and the client module get nosniff.
    for path in ("/pubsocket.js", "/api/history?topic=room:a"):
        _, raw, _ = await ahttp("GET", running.http + path)
        assert page_headers(raw)["x-content-type-options"] == "nosniff", path


async def test_an_app_overrides_the_default_headers(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>hi</p>")
    app = App(make_settings(), public_dir=tmp_path)
    app.security_headers["Content-Security-Policy"] = "default-src 'none'"
    del app.security_headers["X-Frame-Options"]

    @app.get("/framed")
    async def framed(request: Any, response: Any) -> Any:
        return response("<p>x</p>", headers={"X-Frame-Options": "ALLOWALL"})

    running = await serve(app)
    _, raw, _ = await ahttp("GET", running.http + "/")
    headers = page_headers(raw)
    assert headers["content-security-policy"] == "default-src 'none'"
    assert "x-frame-options" not in headers
    _, raw, _ = await ahttp("GET", running.http + "/framed")
    headers = page_headers(raw)
    assert headers["x-frame-options"] == "ALLOWALL"
    # Handler HTML gets what cannot break its inline scripts: framing and referrer only.
    assert headers["content-security-policy"].startswith("frame-ancestors 'self'")
    assert "script-src" not in headers["content-security-policy"]
    app.html_headers.clear()
    _, raw, _ = await ahttp("GET", running.http + "/framed")
    assert "content-security-policy" not in page_headers(raw)




async def test_forbidden_requests_are_logged_as_refusals(
        serve: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pubsocket.web.limits.refusals",
                        Throttled(logging.getLogger("pubsocket.limits")))
    running = await serve(api_app())
    user = {"Authorization": f"Bearer {token('alice', topics={'publish': ['room:*']})}",
            "Content-Type": "application/json"}
    with caplog.at_level(logging.WARNING, "pubsocket.limits"):
        status, _, _ = await ahttp("POST", running.http + "/api/publish",
                                   orjson.dumps({"topic": "secret:x", "data": 1}), user)
    assert status == 403
    assert any("limit forbidden by 127.0.0.1" in r.getMessage() for r in caplog.records)
