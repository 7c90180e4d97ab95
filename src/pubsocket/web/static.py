"""Static files from a public folder, with path traversal refused."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from .response import Response

MAX_STATIC_BYTES = 16 * 1024 * 1024


def static_response(public_dir: Path | None, path: str) -> Response | None:
    """The file at `path` under `public_dir` (``index.html`` for folders), or None."""
    if public_dir is None:
        return None
    root = public_dir.resolve()
    relative = path.lstrip("/")
    if "\x00" in relative:
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    if not candidate.is_file() or candidate.stat().st_size > MAX_STATIC_BYTES:
        return None
    ctype = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return Response(status=200, body=candidate.read_bytes(), content_type=ctype)
