"""HTTP routing, auth, bodies and static files, through a real server and raw sockets."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pubsocket import App, noauth, secured
from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET, make_settings, raw_request


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


async def ahttp(*args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(http, *args, **kwargs)


def demo_app(tmp_path: Path | None = None) -> App:
    app = App(make_settings(), public_dir=tmp_path)

    @app.get("/items/{item_id}")
    async def item(request: Any, response: Any) -> Any:
        return response({"id": request.params["item_id"], "q": request.params.get("q")})

    @app.post("/echo")
    async def echo(request: Any, response: Any) -> Any:
        return response({"body": request.body if not isinstance(request.body, bytes)
                         else request.body.decode()})

    @app.post("/open")
    @noauth()
    async def open_post(request: Any, response: Any) -> Any:
        return response("open", 201)

    @secured()
    @app.get("/private")
    async def private(request: Any, response: Any) -> Any:
        return response({"sub": request.claims["sub"]})

    @app.get("/boom")
    async def boom(request: Any, response: Any) -> Any:
        raise RuntimeError("secret internals")

    @app.get("/headers")
    async def headers(request: Any, response: Any) -> Any:
        return response({"ua": request.headers["X-TEST"], "cookies": request.cookies},
                        headers={"X-Reply": "yes"})

    return app


async def test_path_and_query_params(serve: Any) -> None:
    srv = await serve(demo_app())
    status, _, body = await ahttp("GET", f"{srv.http}/items/42?q=x")
    assert status == 200 and json.loads(body) == {"id": "42", "q": "x"}


async def test_path_params_are_percent_decoded_on_both_servers(serve_any: Any) -> None:
    srv = await serve_any(demo_app())
    status, _, body = await ahttp("GET", f"{srv.http}/items/caf%C3%A9")
    assert status == 200 and json.loads(body)["id"] == "café"
    status, _, body = await ahttp("GET", f"{srv.http}/items/a%2Fb")
    assert status == 200 and json.loads(body)["id"] == "a/b"
    status, _, body = await ahttp("GET", f"{srv.http}/items/%FF")
    assert status == 400 and json.loads(body)["error"] == "bad_path"


async def test_headers_case_insensitive_cookies_and_custom_headers(serve: Any) -> None:
    srv = await serve(demo_app())
    status, headers, body = await ahttp("GET", f"{srv.http}/headers",
                                        headers={"x-test": "abc", "Cookie": "a=1; b=two"})
    assert status == 200
    assert json.loads(body) == {"ua": "abc", "cookies": {"a": "1", "b": "two"}}
    assert headers["X-Reply"] == "yes"


@pytest.mark.parametrize(
    ("ctype", "payload", "expected"),
    [
        ("application/json", b'{"a": [1, 2]}', {"a": [1, 2]}),
        ("application/x-www-form-urlencoded", b"a=1&b=x+y", {"a": "1", "b": "x y"}),
        ("text/plain", b"hello", "hello"),
        ("application/octet-stream", b"raw", "raw"),
    ],
)
async def test_post_bodies_need_a_token(serve: Any, ctype: str, payload: bytes,
                                        expected: Any) -> None:
    srv = await serve(demo_app())
    status, _, body = await ahttp("POST", f"{srv.http}/echo", payload,
                                  {"Content-Type": ctype, "Authorization": f"Bearer {API_KEY}"})
    assert status == 200 and json.loads(body) == {"body": expected}


async def test_write_routes_refuse_without_token_with_json_401(serve: Any) -> None:
    srv = await serve(demo_app())
    status, headers, body = await ahttp("POST", f"{srv.http}/echo", b"{}",
                                        {"Content-Type": "application/json"})
    assert status == 401
    assert json.loads(body)["error"] == "unauthorized"
    assert headers["content-type"] == "application/json"


async def test_noauth_opens_a_write_route(serve: Any) -> None:
    srv = await serve(demo_app())
    status, _, body = await ahttp("POST", f"{srv.http}/open", b"")
    assert (status, body) == (201, b"open")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {API_KEY}", True),
        (f"bearer {API_KEY}", True),
        (f"BEARER {API_KEY}", True),
        (f"Basic {API_KEY}", False),
        (f"Bearer {API_KEY}x", False),
        ("Bearer ", False),
        (f"Bearer {Authenticator(None, SECRET).issue('alice')}", True),
        (f"Bearer {Authenticator(None, SECRET).issue('alice', ttl=-10)}", False),
        (f"Bearer {Authenticator(None, 'another-secret-0123456789abcdef0123').issue('a')}",
         False),
    ],
)
async def test_secured_get_token_forms(serve: Any, header: str, ok: bool) -> None:
    srv = await serve(demo_app())
    status, _, _ = await ahttp("GET", f"{srv.http}/private", headers={"Authorization": header})
    assert status == (200 if ok else 401)


async def test_two_authorization_headers_and_query_tokens_are_refused(serve: Any) -> None:
    srv = await serve(demo_app())
    two = (f"GET /private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
           f"Authorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n").encode()
    assert (await raw_request(srv.port, two)).startswith(b"HTTP/1.1 401")
    status, _, _ = await ahttp("GET", f"{srv.http}/private?token={API_KEY}")
    assert status == 401


async def test_handler_exception_is_500_without_its_text(serve: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(demo_app())
    status, _, body = await ahttp("GET", f"{srv.http}/boom")
    assert status == 500
    assert b"secret internals" not in body and json.loads(body)["error"] == "internal_error"
    assert "secret internals" in caplog.text  # the traceback goes to the server log


async def test_not_found_and_method_not_allowed(serve: Any) -> None:
    srv = await serve(demo_app())
    assert (await ahttp("GET", f"{srv.http}/nope"))[0] == 404
    assert (await ahttp("PUT", f"{srv.http}/items/1", b"",
                        {"Authorization": f"Bearer {API_KEY}"}))[0] == 405


async def test_static_files_and_traversal(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("nope")
    srv = await serve(demo_app(tmp_path))
    status, headers, body = await ahttp("GET", f"{srv.http}/")
    assert status == 200 and body == b"<h1>home</h1>"
    status, headers, body = await ahttp("GET", f"{srv.http}/app.js")
    assert status == 200 and "javascript" in headers["content-type"]
    raw = b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert (await raw_request(srv.port, raw)).startswith(b"HTTP/1.1 404")
    raw = b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert (await raw_request(srv.port, raw)).startswith(b"HTTP/1.1 404")


async def test_keep_alive_and_pipelining_answer_in_order(serve: Any) -> None:
    srv = await serve(demo_app())
    reqs = b"".join(f"GET /items/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    reqs += b"GET /items/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await raw_request(srv.port, reqs)
    assert answer.count(b"HTTP/1.1 200 OK") == 6
    positions = [answer.index(f'"id":"{i}"'.encode()) for i in (*range(5), "last")]
    assert positions == sorted(positions)


async def test_chunked_body(serve: Any) -> None:
    srv = await serve(demo_app())
    raw = (f"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
           "Connection: close\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n").encode()
    answer = await raw_request(srv.port, raw)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"body":{"a":1}}')
