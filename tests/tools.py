"""Tools the suite needs from outside Python: found, skipped outside CI, or failed in CI.

`require(name, why)` is for parts that pip cannot provide (a browser, Node): on a
developer's machine a missing one skips the test with a one-line reason; with
``CI=true`` it fails the run, so CI never goes green by skipping silently. Tools that
the ``dev`` extra installs (websocat, the Redis server) are looked up with `venv_tool`,
and a missing one is always a failure: ``make test`` installs them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when the run is CI's (``CI=true``), where nothing may be skipped for a tool."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def venv_tool(name: str) -> str | None:
    """`name` from this interpreter's bin directory (the venv), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def require(name: str, why: str) -> str:
    """The path of executable `name` (or `name` itself for an importable module).

    Missing: `pytest.fail` when `in_ci()`, else `pytest.skip` with a one-line reason
    naming `why` the test needs it.
    """
    found = venv_tool(name)
    if found is None and importlib.util.find_spec(name) is not None:
        found = name
    if found is not None:
        return found
    message = f"{name} not found ({why})"
    if in_ci():
        pytest.fail(f"{message}; CI=true makes it mandatory", pytrace=False)
    pytest.skip(message)
