"""Each refused authentication is one line of the refusal log, under its most specific
kind (docs/security.md): ``invalid_token`` (with the reason), ``token_expired``,
``connect_hook``. Before, the 401's cause logged it (``invalid_token``, ``connect_hook``)
and the app logged the same 401 again (``unauthorized (...)``); a bad token in a
Centrifuge connect command was not logged at all.

A real server; websockets clients for upgrades and Centrifuge connects, raw HTTP for the
fallback, emulation and SSE routes. The module runs unthrottled, since `refusals` is
process-wide and the same kind comes up case after case.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, HTTPError, Unauthorized, pubsub
from pubsocket.log import refusals
from pubsocket.web.uni_sse import UNI_SSE_PATH, uni_sse
from tests.conftest import Running, make_settings
from tests.fallback.client import HttpStream, request
from tests.raw_http import RawResponse

SELF = "self"  # the server's own origin, for the connection hook's Origin rule


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refusal its own log line (`refusals` is process-wide)."""
    monkeypatch.setattr(refusals, "_interval", 0.0)
    # and nothing held back by earlier tests ("(+5 more since the last)" on the first line)
    monkeypatch.setattr(refusals, "_held", {})
    monkeypatch.setattr(refusals, "_last", {})


def refusing_app() -> App:
    """The seed endpoint (secured), Centrifuge (secured; its emulation routes), a
    connection hook that refuses everyone and one that raises its own 401, uni_sse."""
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)
    pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    pubsub("/ws/hook", app=app, authenticate=lambda request: None)

    def raising(request: Any) -> None:
        raise Unauthorized("session expired")

    pubsub("/ws/raising", app=app, authenticate=raising)
    uni_sse(app=app, secured=True)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upgrade(srv: Running, path: str, headers: dict[str, str] | None = None,
                  origin: str | None = None, subprotocols: list[str] | None = None) -> int:
    """The refused upgrade's status."""
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"{srv.ws}{path}", additional_headers=headers or {},
                           origin=srv.http if origin == SELF else origin,  # type: ignore[arg-type]
                           subprotocols=subprotocols, open_timeout=5):  # type: ignore[arg-type]
            pass
    return info.value.response.status_code


async def centrifuge_connect(srv: Running, token: str) -> object:
    """A connect command with `token`: the close code, or the error reply's code."""
    async with connect(f"{srv.ws}/connection/websocket", open_timeout=5) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
        try:
            async with asyncio.timeout(5):
                reply = json.loads(await ws.recv())
        except websockets.ConnectionClosed:
            return ws.close_code
        return reply["error"]["code"]


async def post(srv: Running, path: str, body: object,
               headers: dict[str, str] | None = None) -> int:
    return (await request(srv.port, path, body, headers))[0]


async def get(srv: Running, path: str) -> int:
    response = await RawResponse.send(srv.port, f"GET {path} HTTP/1.1\r\n\r\n")
    await response.close()
    return response.status


async def centrifuge_stream(srv: Running, token: str) -> object:
    """A Centrifuge http_stream opened with a connect: the stream's last line."""
    stream = await HttpStream.post(srv.port, "/connection/http_stream",
                                   json.dumps({"id": 1, "connect": {"token": token}}).encode(),
                                   {"Content-Type": "application/json"})
    try:
        assert stream.status == 200
        lines = []
        for _ in range(5):  # bounded: the refusal ends the stream at once
            try:
                lines.append(await stream.line())
            except EOFError:
                break
        return lines[-1]
    finally:
        await stream.close()


async def test_each_refused_connection_is_logged_once(serve: Any, caplog: Any) -> None:
    srv = await serve(refusing_app())
    auth = srv.app.auth
    bad, old = "not-a-token", auth.issue("alice", ttl=-10)
    forged = auth.issue("alice")[:-4] + "AAAA"
    Case = tuple[str, Callable[[], Awaitable[object]], object, str]
    cases: list[Case] = [
        # the seed endpoint's upgrade: header, bearer subprotocol, none
        ("seed: bad", lambda: upgrade(srv, "/ws/chat", bearer(bad)), 401,
         "invalid_token by 127.0.0.1:*: not the API key and not a valid JWT"),
        ("seed: forged", lambda: upgrade(srv, "/ws/chat", bearer(forged)), 401,
         "invalid_token by 127.0.0.1:*: bad signature"),
        ("seed: expired", lambda: upgrade(srv, "/ws/chat", bearer(old)), 401,
         "token_expired by 127.0.0.1:*"),
        ("seed: subprotocol", lambda: upgrade(srv, "/ws/chat",
                                              subprotocols=["bearer", bad]), 401,
         "invalid_token by 127.0.0.1:*: not the API key and not a valid JWT"),
        ("seed: no token", lambda: upgrade(srv, "/ws/chat"), 401,
         "invalid_token by 127.0.0.1:*: a valid Bearer token is required"),
        # the seed endpoint's HTTP fallback: a stream, an emulation POST
        ("fallback stream: expired", lambda: post(
            srv, "/ws/chat?transport=http_stream", [], bearer(old)), 401,
         "token_expired by 127.0.0.1:*"),
        ("fallback stream: no token", lambda: post(
            srv, "/ws/chat?transport=http_stream", []), 401,
         "invalid_token by 127.0.0.1:*: a valid Bearer token is required"),
        ("fallback emulation: bad", lambda: post(
            srv, "/ws/chat?transport=emulation", {}, bearer(bad)), 401,
         "invalid_token by 127.0.0.1:*: not the API key and not a valid JWT"),
        # Centrifuge (its token is in the connect command): a socket, a stream, /emulation
        ("centrifuge connect: bad", lambda: centrifuge_connect(srv, bad), 3500,
         "invalid_token by *127.0.0.1*: not the API key and not a valid JWT"),
        ("centrifuge connect: expired", lambda: centrifuge_connect(srv, old), 109,
         "token_expired by *127.0.0.1*"),
        ("centrifuge stream: bad", lambda: centrifuge_stream(srv, bad),
         {"push": {"disconnect": {"code": 3500, "reason": "invalid token",
                                  "reconnect": False}}},
         "invalid_token by *127.0.0.1*: not the API key and not a valid JWT"),
        ("emulation: bad", lambda: post(srv, "/emulation", {}, bearer(bad)), 401,
         "invalid_token by 127.0.0.1:*: not the API key and not a valid JWT"),
        ("uni_sse: expired", lambda: get(
            srv, UNI_SSE_PATH + "?cf_connect=" + quote(json.dumps({"token": old}))), 401,
         "token_expired by 127.0.0.1:*"),
        # connection hooks: returning None, raising its own 401; upgrade and fallback
        ("hook: upgrade", lambda: upgrade(srv, "/ws/hook", origin=SELF), 401,
         "connect_hook by 127.0.0.1:*"),
        ("hook: stream", lambda: post(srv, "/ws/hook?transport=http_stream", [],
                                      {"Origin": srv.http}), 401,
         "connect_hook by 127.0.0.1:*"),
        ("hook: raises", lambda: upgrade(srv, "/ws/raising", origin=SELF), 401,
         "connect_hook by 127.0.0.1:*"),
    ]
    caplog.set_level(logging.INFO, "pubsocket")
    wrong = []  # every case runs: the report shows them all
    for name, attempt, expected, line in cases:
        caplog.clear()
        assert await attempt() == expected, name
        lines = [r.getMessage() for r in caplog.records if r.name == "pubsocket.limits"]
        if len(lines) != 1 or not _matches(lines[0], "limit " + line):
            wrong.append((name, lines))
        assert not any(bad in x or old in x for x in caplog.messages), name  # no token
        assert not [r for r in caplog.records if r.name == "pubsocket.app"], name
    assert not wrong, "\n".join(map(str, wrong))


async def test_a_hook_refusing_with_403_is_logged_once_by_its_code(
        serve: Any, caplog: Any) -> None:
    app = App(make_settings())

    def banned(request: Any) -> None:
        raise HTTPError(403, "forbidden", "banned")

    pubsub("/ws/chat", app=app, authenticate=banned)
    srv = await serve(app)
    caplog.set_level(logging.INFO, "pubsocket")
    assert await upgrade(srv, "/ws/chat", origin=SELF) == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "pubsocket.limits"]
    assert len(lines) == 1 and _matches(lines[0], "limit forbidden by 127.0.0.1:*"), lines


def _matches(text: str, pattern: str) -> bool:
    """`text` is `pattern` with each ``*`` standing for any run of characters."""
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))


async def test_refused_upgrades_are_logged_once_under_asgi_too(
        serve_any: Any, caplog: Any) -> None:
    srv = await serve_any(refusing_app())
    caplog.set_level(logging.INFO, "pubsocket")
    for path, origin, line in [
            ("/ws/chat", None, "limit token_expired by 127.0.0.1:*"),
            ("/ws/hook", SELF, "limit connect_hook by 127.0.0.1:*")]:
        caplog.clear()
        headers = bearer(srv.app.auth.issue("alice", ttl=-10)) if origin is None else {}
        assert await upgrade(srv, path, headers, origin) == 401
        lines = [r.getMessage() for r in caplog.records if r.name == "pubsocket.limits"]
        assert len(lines) == 1 and _matches(lines[0], line), (srv.kind, lines)
