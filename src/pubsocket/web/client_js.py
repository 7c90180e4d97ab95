"""``GET /pubsocket.js``: the browser client, one ES module shipped inside the package.

The file is read once per process (it cannot change under a running server) and served
with a strong ETag and ``Cache-Control: no-cache``: browsers revalidate on every load
and get ``304 Not Modified`` while it is unchanged, so an upgrade is never masked by a
stale cached copy.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from .app import App
from .request import Request
from .response import Response, ResponseFactory

CLIENT_PATH = "/pubsocket.js"
CONTENT_TYPE = "application/javascript; charset=utf-8"


@cache
def client_source() -> tuple[bytes, str]:
    """(the module's bytes, its quoted ETag), read from the package on first use."""
    body = resources.files("pubsocket").joinpath("static/pubsocket.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def mount_client(app: App, path: str) -> None:
    """Serve the browser client at `path` on `app` (no token needed: it is public code)."""

    async def pubsocket_js(request: Request, response: ResponseFactory) -> Response:
        body, etag = client_source()
        headers = [("ETag", etag), ("Cache-Control", "no-cache")]
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status=304, body=b"", content_type=CONTENT_TYPE, headers=headers)
        return Response(status=200, body=body, content_type=CONTENT_TYPE, headers=headers)

    app.get(path)(pubsocket_js)


def _etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` value (weak ones compare weakly, as
    RFC 9110 asks for GET; ``*`` matches any)."""
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
    if "*" in tags:
        tags.add(client_source()[1])
    return tags
