"""Liveness and readiness, for load balancers and Kubernetes probes (docs/deploy.md).

``GET /healthz`` (`Settings.health_path`): 200 ``{"status": "ok"}`` whenever the
process answers at all. ``GET /readyz`` (`Settings.ready_path`): 200 ``{"status":
"ready"}`` while the broker is connected and the server is not draining; otherwise 503
with ``"draining"`` or ``"broker_unavailable"``. Both are answered only when no app
route (and no static file) takes the path, need no token and cost a dict lookup; an
empty path (``PUBSOCKET_HEALTH_PATH=off``) turns one off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from .response import Response

if TYPE_CHECKING:
    from .app import App

_NO_STORE = [("cache-control", "no-store")]


def health_response(app: App, path: str) -> Response | None:
    """The probe answer for `path`, or None when it is not a probe path."""
    settings = app.settings
    if settings.health_path and path == settings.health_path:
        return _status(200, "ok")
    if settings.ready_path and path == settings.ready_path:
        if app.draining:
            return _status(503, "draining")
        if not app.hub.broker.healthy:
            return _status(503, "broker_unavailable")
        return _status(200, "ready")
    return None


def _status(code: int, status: str) -> Response:
    return Response(status=code, body=orjson.dumps({"status": status}),
                    content_type="application/json", headers=list(_NO_STORE))
