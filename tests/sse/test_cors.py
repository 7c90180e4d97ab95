"""CORS on the HTTP browser transports (web/cors.py), with raw requests to a real server:
/connection/http_stream, /connection/sse, /emulation and /connection/uni_sse answer
preflights and allow the origins the upgrade's Origin rule allows, and only those.
(The same in Chromium: tests/browser/test_centrifuge_fallback_browser.py.)"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from pubsocket.web import uni_sse
from tests.centrifuge_js.conftest import cf_app, token
from tests.conftest import raw_request

PAGE = "https://app.example.com"
PATHS = ["/connection/http_stream", "/connection/sse", "/emulation", "/connection/uni_sse"]


def app(**settings: Any) -> Any:
    server = cf_app(**settings)
    uni_sse("/connection/uni_sse", app=server, secured=True)
    return server


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def request(port: int, method: str, target: str, origin: str | None = None,
                  body: bytes = b"", **more: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             f"Content-Length: {len(body)}"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in more.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return parse(await raw_request(port, raw))


def preflight(port: int, path: str, origin: str) -> Any:
    return request(port, "OPTIONS", path, origin, Access_Control_Request_Method="POST",
                   Access_Control_Request_Headers="content-type")


@pytest.mark.parametrize("path", PATHS)
async def test_a_listed_origin_is_preflighted(serve_any: Any, path: str) -> None:
    srv = await serve_any(app(allowed_origins=(PAGE,)))
    status, headers, _ = await preflight(srv.port, path, PAGE)
    assert status == 204, headers
    assert headers["access-control-allow-origin"] == PAGE
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert "OPTIONS" in headers["access-control-allow-methods"]
    assert headers["access-control-max-age"] == "600"
    assert headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in headers  # no cookies cross-origin


@pytest.mark.parametrize("path", PATHS)
async def test_an_origin_not_listed_is_refused(serve_any: Any, path: str) -> None:
    srv = await serve_any(app(allowed_origins=("https://other.example.com",)))
    status, headers, body = await preflight(srv.port, path, PAGE)
    assert status == 403 and orjson.loads(body)["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in headers and headers["vary"] == "Origin"


async def test_the_same_site_needs_no_list(serve: Any) -> None:
    srv = await serve(app())
    same = f"http://127.0.0.1:{srv.port}"
    status, headers, _ = await preflight(srv.port, "/emulation", same)
    assert status == 204 and headers["access-control-allow-origin"] == same


async def test_responses_and_errors_carry_the_origin(serve: Any) -> None:
    """A refusal a page must read (the SDK reconnects on 404) is readable cross-origin;
    a request with an origin not allowed is refused by the handler too."""
    srv = await serve(app(allowed_origins=(PAGE,)))
    body = orjson.dumps({"session": "gone", "node": srv.app.hub.relay.node, "data": "{}"})
    status, headers, _ = await request(srv.port, "POST", "/emulation", PAGE, body,
                                       Content_Type="application/json")
    assert status == 404 and headers["access-control-allow-origin"] == PAGE
    status, headers, _ = await request(srv.port, "POST", "/emulation", "https://evil.example",
                                       body, Content_Type="application/json")
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = await request(srv.port, "POST", "/emulation", None, body,
                                       Content_Type="application/json")
    assert status == 404 and "access-control-allow-origin" not in headers
    assert "vary" not in headers  # no Origin: not a browser, nothing varies


async def test_streams_allow_a_listed_origin_and_refuse_others(serve: Any) -> None:
    srv = await serve(app(allowed_origins=(PAGE,)))
    connect = quote(orjson.dumps({"token": token("alice"), "subs": {"news": {}}}).decode())
    for origin, want in ((PAGE, 200), ("https://evil.example", 403)):
        stream = await uni_sse_head(srv.port, f"/connection/uni_sse?cf_connect={connect}",
                                    origin)
        assert stream[0] == want, stream
        assert (stream[1].get("access-control-allow-origin") == PAGE) is (want == 200)


async def uni_sse_head(port: int, target: str, origin: str) -> tuple[int, dict[str, str]]:
    """The status and headers of a streamed GET (read up to the head, then closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Origin: {origin}\r\n\r\n".encode())
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    status, headers, _ = parse(head)
    return status, headers


async def test_preflights_are_rate_limited(serve: Any) -> None:
    srv = await serve(app(allowed_origins=(PAGE,), http_rate_limit=0.001, http_rate_burst=2))
    statuses = [(await preflight(srv.port, "/emulation", PAGE))[0] for _ in range(4)]
    assert statuses == [204, 204, 429, 429]
