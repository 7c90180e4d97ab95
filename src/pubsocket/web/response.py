"""`Response`: what a handler returns, built by calling the `response` argument.

``response(content, http_code=200, content_type=None, headers=None)``: dict/list -> JSON,
str -> text/html, bytes as given (application/octet-stream unless told), None -> empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..errors import HTTPError

# Statuses sent without content, Content-Type or Content-Length (RFC 9110 §15.3.5,
# §15.4.5: a 304's length would otherwise tell a cache the resource is empty).
BODILESS: Final = frozenset({204, 304})

# Sent with every static file (the public folder: the demo page, its script and
# style) unless the response sets its own; an app changes them with
# `App.security_headers`. Same-origin scripts, styles, images and connections
# (WebSockets included), no plugins, no framing by other sites, no referrer beyond the
# origin. Only same-origin files: an inline <script> needs a widened policy.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'self'; form-action 'self'; frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
# Sent with HTML a handler returns (`App.html_headers`): only what cannot break the
# page's own scripts, since only the app knows what those are: no framing by other
# sites, no referrer beyond the origin. A full CSP is the app's to set.
HTML_HEADERS: Final = {
    "Content-Security-Policy": "frame-ancestors 'self'; object-src 'none'; base-uri 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
NOSNIFF: Final = ("X-Content-Type-Options", "nosniff")


def with_defaults(response: Response, defaults: Mapping[str, str]) -> Response:
    """Add `defaults` and `nosniff` to `response`: only the headers it does not set
    itself."""
    have = {name.lower() for name, _ in response.headers}
    extra = [(k, v) for k, v in defaults.items() if k.lower() not in have]
    if "x-content-type-options" not in have:
        extra.append(NOSNIFF)
    response.headers.extend(extra)
    return response


@dataclass(slots=True)
class Response:
    """A complete HTTP response. `body` is always bytes."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


class ResponseFactory:
    """The `response` object handed to handlers; calling it builds a `Response`."""

    __slots__ = ()

    def __call__(
        self,
        content: Any = None,
        http_code: int = 200,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if content is None:
            body, ctype = b"", "text/plain; charset=utf-8"
        elif isinstance(content, bytes | bytearray | memoryview):
            body, ctype = bytes(content), "application/octet-stream"
        elif isinstance(content, str):
            body, ctype = content.encode(), "text/html; charset=utf-8"
        else:
            body, ctype = orjson.dumps(content), "application/json"
        return Response(
            status=http_code,
            body=body,
            content_type=content_type or ctype,
            headers=list((headers or {}).items()),
        )


def error_response(exc: HTTPError, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON body every refusal uses: ``{"error": code, "message": text}``."""
    return Response(
        status=exc.status,
        body=orjson.dumps({"error": exc.code, "message": exc.message}),
        content_type="application/json",
        headers=list((headers or {}).items()),
    )
