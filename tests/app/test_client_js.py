"""``GET /pubsocket.js``: the browser client served by every app that mounts `pubsub`."""

from __future__ import annotations

from importlib import resources
from typing import Any

from pubsocket import App, pubsub
from tests.app.test_http import ahttp as _ahttp
from tests.conftest import make_settings


async def ahttp(*args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    """`tests.app.test_http.ahttp` with header names lowercased."""
    status, headers, body = await _ahttp(*args, **kwargs)
    return status, {k.lower(): v for k, v in headers.items()}, body


SOURCE = resources.files("pubsocket").joinpath("static/pubsocket.js").read_bytes()


async def test_served_with_type_etag_and_revalidation(serve_any: object) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)
    running = await serve_any(app)  # type: ignore[operator]
    status, headers, body = await ahttp("GET", running.http + "/pubsocket.js")
    assert status == 200 and body == SOURCE
    assert headers["content-type"] == "application/javascript; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert b"export function connect" in body and b"export class PubsocketError" in body

    for match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, headers, body = await ahttp("GET", running.http + "/pubsocket.js",
                                            headers={"If-None-Match": match})
        assert (status, body, headers["etag"]) == (304, b"", etag), match
        # A 304 has no Content-Length: a 0 there would tell a cache the file is empty.
        assert "content-length" not in headers and "content-type" not in headers, match
    status, _, body = await ahttp("GET", running.http + "/pubsocket.js",
                                  headers={"If-None-Match": '"stale"'})
    assert status == 200 and body == SOURCE


async def test_mounted_once_moved_or_left_out(serve: object) -> None:
    app = App(make_settings())
    pubsub("/ws/a", app=app)
    pubsub("/ws/b", app=app)  # a second endpoint does not mount it twice (no error)
    moved = App(make_settings())
    pubsub("/ws/chat", app=moved, client_path="/static/ps.js")
    without = App(make_settings())
    pubsub("/ws/chat", app=without, client_path=None)
    one, two, three = [await serve(a) for a in (app, moved, without)]  # type: ignore[operator]
    assert (await ahttp("GET", one.http + "/pubsocket.js"))[0] == 200
    assert (await ahttp("GET", two.http + "/static/ps.js"))[0] == 200
    assert (await ahttp("GET", two.http + "/pubsocket.js"))[0] == 404
    assert (await ahttp("GET", three.http + "/pubsocket.js"))[0] == 404
