"""examples/django under uvicorn in a subprocess: a real Django project whose session
login authenticates pubsocket sockets mounted at /rt (chatsite/realtime.py's hook).

A real login POST (Django's LoginView, with its CSRF token and cookie) gives a session
cookie; a WebSocket upgrade carrying it from the site's own Origin subscribes and
receives. Without the cookie: 401; from a foreign Origin (cross-site WebSocket
hijacking) or with no Origin: 403; logging out closes the open socket (4003) and the
old cookie is then 401.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import websockets
from websockets.asyncio.client import connect

import pubsocket.client as pc
from tests.conftest import API_KEY
from tests.integration.spawn import ROOT
from tests.integration.uvicorn_proc import Host, uvicorn_host

pytest.importorskip("django")

SITE = ROOT / "examples" / "django"
PASSWORD = "wonderland-9"
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def site_env(tmp_path: Path) -> dict[str, str]:
    """A fresh database with one user, alice (Django's own migrate/createsuperuser)."""
    env = {**os.environ, "DJANGO_SECRET_KEY": "test-django-secret-0123456789abcdef",
           "DJANGO_DB": str(tmp_path / "site.sqlite3")}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=SITE, env=env, check=True, timeout=60)
    subprocess.run([*manage, "createsuperuser", "--noinput", "--username", "alice",
                    "--email", "alice@example.com"], cwd=SITE, check=True, timeout=60,
                   env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
                   stdout=subprocess.DEVNULL)
    return {k: env[k] for k in ("DJANGO_SECRET_KEY", "DJANGO_DB")}


@pytest.fixture
def site(site_env: dict[str, str]) -> Iterator[Host]:
    with uvicorn_host("chatsite.asgi:application", str(SITE),
                      ready_path="/accounts/login/", **site_env) as host:
        yield host


class Browser:
    """Just enough of a browser for Django's forms: a cookie jar and CSRF tokens."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None
                ) -> tuple[int, Any, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.host.port, timeout=10)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                   "Origin": self.host.http, "Referer": self.host.http + path}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            text = reply.read().decode()
            for value in reply.headers.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie(value)
                for name, morsel in jar.items():
                    if morsel.value:
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
            return reply.status, reply.headers, text  # .get() ignores case
        finally:
            conn.close()

    def post_form(self, page: str, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """Load `page` for its CSRF token, then post `fields` to `path`."""
        status, _, html = self.request("GET", page)
        assert status == 200, html
        token = _CSRF_INPUT.search(html)
        assert token is not None, html
        status, headers, text = self.request(
            "POST", path, {**fields, "csrfmiddlewaretoken": token.group(1)})
        return status, headers.get("Location", text)

    def login(self, password: str) -> tuple[int, str]:
        return self.post_form("/accounts/login/", "/accounts/login/",
                              {"username": "alice", "password": password})


def socket(host: Host, cookie: str | None, origin: str | None = "self") -> Any:
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    return connect(f"{host.ws}/rt/ws/chat", additional_headers=headers,
                   origin=host.http if origin == "self" else origin,  # type: ignore[arg-type]
                   subprotocols=["pubsocket.v1"], open_timeout=5)  # type: ignore[list-item]


async def refused(host: Host, cookie: str | None, origin: str | None = "self") -> int:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with socket(host, cookie, origin):
            pass
    status: int = info.value.response.status_code
    return status


async def reply_to(ws: Any, **body: Any) -> dict[str, Any]:
    await ws.send(json.dumps(body))
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("id") == body["id"]:
            return frame


async def next_message(ws: Any) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("type") == "message":
            return frame


async def test_django_session_login_authenticates_the_socket(site: Host) -> None:
    browser = Browser(site)
    # A wrong password re-renders the form: no session.
    status, _ = await asyncio.to_thread(browser.login, "wrong")
    assert status == 200 and "sessionid" not in browser.cookies
    assert await refused(site, None) == 401  # no cookie at all

    status, location = await asyncio.to_thread(browser.login, PASSWORD)
    assert (status, location) == (302, "/")
    session = browser.cookies["sessionid"]

    # The hijack: another site's page opening a socket (the browser adds the cookie).
    assert await refused(site, session, "http://evil.example") == 403
    assert await refused(site, session, None) == 403
    assert await refused(site, "not-a-session") == 401

    async with socket(site, session) as ws, \
            pc.connect(f"{site.ws}/rt/ws/chat", token=API_KEY) as script:
        assert (await reply_to(ws, action="subscribe", topic="room:lobby", id=1))["type"] == "ack"
        assert (await reply_to(ws, action="subscribe", topic="news", id=2))["type"] == "ack"
        # A script with the API key publishes beside the cookie users.
        await script.publish("room:lobby", {"text": "from a script"})
        assert (await next_message(ws))["data"] == {"text": "from a script"}
        # The cookie user publishes as who the session says.
        await ws.send(json.dumps({"action": "publish", "topic": "room:lobby",
                                  "data": {"text": "hi"}, "id": 3}))
        mine = await next_message(ws)  # (its ack may come before or after)
        assert mine["from"]["info"] == {"name": "alice"}
        # A Django view (CSRF-checked form post) publishes in the same event loop.
        status, _ = await asyncio.to_thread(browser.post_form, "/", "/announce/",
                                            {"text": "from a view"})
        assert status == 200
        assert (await next_message(ws))["data"] == {"text": "from a view", "by": "alice"}
        # The session's topics: news may be read, not written.
        denied = await reply_to(ws, action="publish", topic="news", data={}, id=4)
        assert denied["code"] == "forbidden"

        # Logging out closes the open socket (the site's logout signal, close 4003) ...
        status, _ = await asyncio.to_thread(browser.post_form, "/", "/accounts/logout/", {})
        assert status == 302
        with pytest.raises(websockets.ConnectionClosed):
            await next_message(ws)
        assert ws.close_code == 4003
    # ... and the old cookie no longer opens one.
    assert await refused(site, session) == 401
