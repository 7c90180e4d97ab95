"""Module-level decorators with tina4's names, bound to the *current* app.

`App.load_routes` (and `using_app`) make an app current while route files run, so
``@get("/x")`` in a route file registers on that app; two apps never share routes.
Outside any such block the decorators use a lazily created default app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .app import App
from .routing import Handler, mark_auth

_current: ContextVar[App | None] = ContextVar("pubsocket_current_app", default=None)
_default: list[App] = []  # the process-wide fallback, created on first use


def current_app() -> App:
    """The app route files register on: the active `using_app` one, else the default."""
    app = _current.get()
    if app is not None:
        return app
    if not _default:
        from ..config import Settings

        _default.append(App(Settings.from_env()))
    return _default[0]


@contextmanager
def using_app(app: App) -> Iterator[App]:
    """Make `app` current for the module-level decorators inside the block."""
    token = _current.set(app)
    try:
        yield app
    finally:
        _current.reset(token)


def get(path: str) -> Callable[[Handler], Handler]:
    """Register a GET (or WebSocket) route on the current app."""
    return current_app().get(path)


def post(path: str) -> Callable[[Handler], Handler]:
    """Register a POST route on the current app (token required unless `noauth`)."""
    return current_app().post(path)


def put(path: str) -> Callable[[Handler], Handler]:
    """Register a PUT route on the current app (token required unless `noauth`)."""
    return current_app().put(path)


def patch(path: str) -> Callable[[Handler], Handler]:
    """Register a PATCH route on the current app (token required unless `noauth`)."""
    return current_app().patch(path)


def delete(path: str) -> Callable[[Handler], Handler]:
    """Register a DELETE route on the current app (token required unless `noauth`)."""
    return current_app().delete(path)


def secured() -> Callable[[Handler], Handler]:
    """Require a valid Bearer token (also for GET and WebSocket upgrades)."""
    return lambda handler: mark_auth(handler, "secured")


def noauth() -> Callable[[Handler], Handler]:
    """Allow a write route (POST/PUT/PATCH/DELETE) without a token."""
    return lambda handler: mark_auth(handler, "noauth")
