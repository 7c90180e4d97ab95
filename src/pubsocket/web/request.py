"""`Request`: what a handler receives, with tina4's attribute names.

The body is parsed once, on first access: JSON -> dict/list, form -> dict, else raw bytes
(or str when the content type is text). A body that claims JSON but does not parse stays raw.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from ..auth.principal import Principal

if TYPE_CHECKING:
    from .app import App
    from .websocket import Upgrader


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued headers. `h["X"]` is the first value; `getall` gives all."""

    __slots__ = ("_items", "_map")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        self._map: dict[str, list[str]] = {}
        for name, value in self._items:
            self._map.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def getall(self, name: str) -> list[str]:
        """Every value of `name`, in order (empty list when absent)."""
        return list(self._map.get(name.lower(), ()))

    def raw(self) -> list[tuple[str, str]]:
        """The headers as received, in order."""
        return list(self._items)


class Request:
    """One HTTP request (or WebSocket upgrade request).

    `params` merges the query string and the path parameters (path wins);
    `upgrader` is set by the server when the request asks for a WebSocket upgrade.
    `root_path` is the prefix the app is mounted under (ASGI ``root_path``, e.g.
    ``/rt``; "" when served at the root): `path` is the path below it, so the public
    URL of this request is ``root_path + path``.
    """

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes = b"",
        path_params: Mapping[str, str] | None = None,
        upgrader: Upgrader | None = None,
        client: tuple[str, int] | None = None,
    ) -> None:
        self.method = method.upper()
        self.url = target
        self.path, _, self.query_string = target.partition("?")
        self.headers = headers
        self.raw_body = body
        self.path_params: dict[str, str] = dict(path_params or {})
        self.upgrader = upgrader
        self.client = client
        self.root_path = ""
        self.claims: Mapping[str, Any] | None = None  # set when a token was verified
        self.app: App | None = None  # the app dispatching this request
        self._principal: Principal | None = None

    @property
    def principal(self) -> Principal:
        """Who sent this request: the verified token's principal on secured routes,
        else anonymous (made on first access, so plain HTTP requests pay nothing)."""
        if self._principal is None:
            self._principal = Principal.anonymous()
        return self._principal

    @principal.setter
    def principal(self, principal: Principal) -> None:
        self._principal = principal

    @property
    def params(self) -> dict[str, str]:
        """Query parameters overlaid with path parameters."""
        merged = dict(parse_qsl(self.query_string, keep_blank_values=True))
        merged.update(self.path_params)
        return merged

    @property
    def is_upgrade(self) -> bool:
        """True when the client asked for a WebSocket upgrade."""
        return self.upgrader is not None

    @cached_property
    def cookies(self) -> dict[str, str]:
        """Cookies from every ``Cookie`` header; a malformed header is ignored."""
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.getall("cookie"):
            try:
                jar.load(header)
            except CookieError:
                continue
        return {k: morsel.value for k, morsel in jar.items()}

    @cached_property
    def body(self) -> Any:
        """The parsed body (see module docstring)."""
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if not self.raw_body:
            return None
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return orjson.loads(self.raw_body)
            except orjson.JSONDecodeError:
                return self.raw_body
        if ctype == "application/x-www-form-urlencoded":
            return dict(parse_qsl(self.raw_body.decode("latin-1"), keep_blank_values=True))
        if ctype.startswith("text/"):
            return self.raw_body.decode("utf-8", "replace")
        return self.raw_body
