"""Where a request lands in a mounted ASGI app: the target below the scope's ``root_path``."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

Scope = MutableMapping[str, Any]


def app_target(scope: Scope) -> str:
    """The request target below the scope's ``root_path``: raw path + query.

    ASGI puts the full path in ``path`` and ``raw_path`` and the mount prefix in
    ``root_path`` (uvicorn ``--root-path``, Starlette's ``Mount``); some servers strip
    the prefix from ``path`` themselves, so a path not starting with it is taken whole.
    Routes match the raw (percent-encoded) path, so the prefix comes off ``raw_path``
    when it starts with the prefix's encoding, else the decoded rest is re-encoded.
    """
    path: str = scope["path"]
    raw_path: bytes | None = scope.get("raw_path")  # optional in ASGI, may be None
    raw = raw_path.decode("latin-1") if raw_path else quote(path)
    root = (scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        rest = path[len(root):]
        encoded_root = quote(root)
        if raw == encoded_root or raw.startswith(encoded_root + "/"):
            raw = raw[len(encoded_root):]
        else:
            raw = quote(rest)
        raw = raw or "/"
    target = raw
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return target
