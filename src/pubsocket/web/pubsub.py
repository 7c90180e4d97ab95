"""The built-in pub/sub endpoint and the HTTP publish API, mounted with one call."""

from __future__ import annotations

from typing import Any

from ..auth import expiry_of
from ..errors import BrokerError, HTTPError, ProtocolViolation
from ..hub import Session
from ..protocol import SUBPROTOCOL, valid_topic
from .app import App
from .decorators import current_app
from .metrics import mount_metrics
from .request import Request
from .response import Response, ResponseFactory
from .routing import Handler, mark_auth
from .websocket import Websocket

PUBLISH_PATH = "/api/publish"
METRICS_PATH = "/metrics"


def pubsub(path: str = "/ws/chat", *, app: App | None = None, secured: bool = False,
           publish_path: str | None = PUBLISH_PATH,
           metrics_path: str | None = METRICS_PATH) -> Handler:
    """Mount the hub's WebSocket endpoint at `path`, plus (once per app)
    ``POST /api/publish`` and ``GET /metrics``.

    Returns the endpoint handler, so ``secured()(pubsub("/ws/chat"))`` works as well as
    ``secured=True``. Plain clients get ``json(data)`` deliveries; clients that offer
    the ``pubsocket.v1`` subprotocol get envelopes, acks and correlated errors.
    """
    target = app or current_app()

    async def pubsub_endpoint(request: Request, response: ResponseFactory) -> None:
        ws = await Websocket(request).connection(subprotocols=[SUBPROTOCOL])
        session = Session(
            target.hub, ws, target.settings,
            envelope=ws.subprotocol == SUBPROTOCOL,
            expires_at=expiry_of(request.claims) if request.claims else None,
        )
        ws.attach(session)  # push mode: nothing waits per idle connection

    if secured:
        mark_auth(pubsub_endpoint, "secured")
    target.get(path)(pubsub_endpoint)
    if publish_path and target.router.match("POST", publish_path) is None:
        target.post(publish_path)(_publish_handler(target))
    if metrics_path and target.router.match("GET", metrics_path) is None:
        mount_metrics(target, metrics_path)
    return pubsub_endpoint


def _publish_handler(app: App) -> Handler:
    async def publish(request: Request, response: ResponseFactory) -> Response:
        """``POST /api/publish {"topic": T, "data": D}``: 200, 400 or 503 with a JSON body."""
        body: Any = request.body
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_json", "body must be a JSON object {topic, data}")
        topic = body.get("topic")
        if not isinstance(topic, str) or not valid_topic(topic):
            raise HTTPError(400, "invalid_topic",
                            "topic must be 1-255 characters from A-Z a-z 0-9 _ . : @ / -")
        if "data" not in body:
            raise HTTPError(400, "missing_data", "publish needs a data field")
        try:
            await app.hub.publish(topic, body["data"])
        except BrokerError:
            raise HTTPError(503, "broker_unavailable",
                            "the message broker is unavailable, retry later") from None
        except (ValueError, ProtocolViolation):
            raise HTTPError(400, "bad_data", "data is not valid JSON") from None
        return response({"ok": True})

    return publish
