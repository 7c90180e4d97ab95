"""The built-in pub/sub endpoint and the HTTP publish/history API, mounted with one call."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from ..auth import Action, AuthorizeHook, Authorizer
from ..brokers.base import HistoryPolicy
from ..codecs import PLAIN, V1
from ..codecs.centrifuge import CLOSE_CODES
from ..config import Settings
from ..errors import BrokerError, Forbidden, HTTPError
from ..hub import Session
from ..hub.connect import Endpoint, RpcHook
from ..hub.replies import continues
from ..presence.base import PresenceUnavailable
from ..protocol import MAX_HISTORY_LIMIT, SUBPROTOCOL, valid_topic
from .app import App
from .centrifuge_wire import SUBPROTOCOL as PROTOBUF_SUBPROTOCOL
from .centrifuge_wire import ProtobufEndpoint, wants_protobuf
from .client_js import CLIENT_PATH, mount_client
from .connect_auth import ConnectHook, set_connect_hook
from .decorators import current_app
from .metrics import mount_metrics
from .request import Request
from .response import Response, ResponseFactory
from .routing import AUTH_ATTR, Handler, mark_auth
from .websocket import Websocket

PUBLISH_PATH = "/api/publish"
HISTORY_PATH = "/api/history"
PRESENCE_PATH = "/api/presence"
METRICS_PATH = "/metrics"
_TOPIC_RULE = "topic must be 1-255 characters from A-Z a-z 0-9 _ . : @ / -"
_BROKER_DOWN = "the message broker is unavailable, retry later"
log = logging.getLogger("pubsocket.app")


def pubsub(path: str = "/ws/chat", *, app: App | None = None, secured: bool = False,
           history: Mapping[str, HistoryPolicy | None] | None = None,
           authorize: AuthorizeHook | None = None,
           presence: Sequence[str] = (), presence_events: bool | None = None,
           publish_path: str | None = PUBLISH_PATH,
           history_path: str | None = HISTORY_PATH,
           presence_path: str | None = PRESENCE_PATH,
           metrics_path: str | None = METRICS_PATH,
           client_path: str | None = CLIENT_PATH,
           protocol: Literal["plain", "centrifuge"] = "plain",
           rpc: RpcHook | None = None,
           authenticate: ConnectHook | None = None) -> Handler:
    """Mount the hub's WebSocket endpoint at `path`, plus (once per app)
    ``POST /api/publish``, ``GET /api/history``, ``GET /metrics`` and ``GET /pubsocket.js``
    (the browser client, docs/clients.md); each ``*_path`` may be None to leave it out.

    Returns the endpoint handler, so ``secured()(pubsub("/ws/chat"))`` works as well as
    ``secured=True``. Plain clients get ``json(data)`` deliveries; clients that offer
    the ``pubsocket.v1`` subprotocol get envelopes with offsets, acks, recovery and
    history. `history` maps topic patterns to what is kept (None: nothing) ahead of the
    settings' rules, e.g. ``{"ticks.*": None, "chat:*": HistoryPolicy(500, 600)}``.
    `authorize(principal, action, topic) -> bool` (sync or async) is asked for every
    subscribe, publish, history and presence, after the token's ``topics`` claim.
    `presence` lists topic patterns whose subscribers are tracked (``["*"]``: all);
    `presence_events` turns join/leave pushes on or off (default: on).
    ``protocol="centrifuge"`` serves the Centrifuge protocol instead, JSON or (asked
    for at the upgrade) Protobuf (the SDKs' path is ``/connection/websocket``;
    docs/centrifuge.md): the token comes in the
    connect command, so `secured` is enforced there, not at the upgrade;
    `rpc(principal, method, data) -> data` answers its rpc commands.
    `authenticate(request) -> Principal | user id | claims | None` (sync or async) lets
    the host app's own login admit a connection that carries no token, e.g. from its
    session cookie, behind a same-origin check (web/connect_auth.py); connections
    without a token and refused by it get 401. Tokens keep working beside it.
    """
    if authenticate is not None and protocol != "plain":
        raise ValueError("authenticate= is for the plain/pubsocket.v1 endpoint; the "
                         "Centrifuge protocol authenticates in its connect command")
    target = app or current_app()
    hub = target.hub
    if history:
        hub.rules.prepend(history)
    if authorize is not None:
        hub.authorizer = Authorizer(authorize)
    if presence or presence_events is not None:
        hub.presence.enable(presence, presence_events)
    pre_connect = _pre_connect_size(target.settings)
    endpoint = None if protocol == "plain" else Endpoint(
        target.settings.centrifuge_ping, secured=secured, rpc=rpc)
    protobuf = ProtobufEndpoint(target.settings.centrifuge_ping, secured=secured, rpc=rpc)

    async def pubsub_endpoint(request: Request, response: ResponseFactory) -> None:
        if endpoint is not None:
            # JSON, or Protobuf when the upgrade asks (web/centrifuge_wire.py): then a
            # binary wire, and the Protobuf twin of the endpoint.
            ep = protobuf.get() if wants_protobuf(request) else endpoint
            # Small messages until the connect command succeeds (hub.connect raises it).
            cws = await Websocket(request).connection(
                [PROTOBUF_SUBPROTOCOL] if ep is not endpoint else (),
                max_message_size=pre_connect)
            cws.close_codes = CLOSE_CODES
            cws.attach(Session(target.hub, cws, target.settings, principal=request.principal,
                               authenticator=target.auth, endpoint=ep,
                               address=request.client,
                               wires=cws.binary_wires() if ep.codec.binary else cws.wires))
            return
        ws = await Websocket(request).connection(subprotocols=[SUBPROTOCOL])
        session = Session(
            target.hub, ws, target.settings,
            codec=V1 if ws.subprotocol == SUBPROTOCOL else PLAIN,
            principal=request.principal, authenticator=target.auth, address=request.client,
            wires=ws.wires,
        )
        ws.attach(session)  # push mode: nothing waits per idle connection

    if secured:
        mark_auth(pubsub_endpoint, "secured" if endpoint is None else "in_band")
    elif endpoint is None and authenticate is None:
        async def say_open() -> None:  # an open hub is a choice: say so at startup
            if getattr(pubsub_endpoint, AUTH_ATTR, None) is None:  # not secured() later
                log.warning("the hub at %s is open: anyone may connect without a token "
                            "(pubsub(..., secured=True) requires one)", path)
        target.on_startup(say_open)
    if authenticate is not None:
        set_connect_hook(pubsub_endpoint, authenticate)
    target.get(path)(pubsub_endpoint)
    if publish_path and target.router.match("POST", publish_path) is None:
        target.post(publish_path)(_publish_handler(target))
    if history_path and target.router.match("GET", history_path) is None:
        target.get(history_path)(mark_auth(_history_handler(target), "token"))
    if presence_path and target.router.match("GET", presence_path) is None:
        target.get(presence_path)(mark_auth(_presence_handler(target), "token"))
    if metrics_path and target.router.match("GET", metrics_path) is None:
        mount_metrics(target, metrics_path)
    if client_path and target.router.match("GET", client_path) is None:
        mount_client(target, client_path)
    return pubsub_endpoint


def _publish_handler(app: App) -> Handler:
    async def publish(request: Request, response: ResponseFactory) -> Response:
        """``POST /api/publish {"topic": T, "data": D}``: 200 ``{"ok", "offset"?,
        "epoch"?}``, 400 or 503 with a JSON body."""
        body: Any = request.body
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_json", "body must be a JSON object {topic, data}")
        topic = body.get("topic")
        if not isinstance(topic, str) or not valid_topic(topic):
            raise HTTPError(400, "invalid_topic", _TOPIC_RULE)
        if "data" not in body:
            raise HTTPError(400, "missing_data", "publish needs a data field")
        try:
            pub = await app.hub.publish(topic, body["data"], principal=request.principal)
        except Forbidden:
            raise HTTPError(403, "forbidden", "not allowed on this topic") from None
        except BrokerError:
            raise HTTPError(503, "broker_unavailable", _BROKER_DOWN) from None
        except ValueError:
            raise HTTPError(400, "bad_data", "data is not valid JSON") from None
        if pub.offset:
            return response({"ok": True, "offset": pub.offset, "epoch": pub.epoch})
        return response({"ok": True})

    return publish


def _history_handler(app: App) -> Handler:
    async def history(request: Request, response: ResponseFactory) -> Response:
        """``GET /api/history?topic=T[&limit=N][&since=OFFSET&epoch=E]``: the kept
        publications (newest `limit` without `since`), oldest first, with the position."""
        params = request.params
        topic = params.get("topic")
        if not isinstance(topic, str) or not valid_topic(topic):
            raise HTTPError(400, "invalid_topic", _TOPIC_RULE)
        await _check(app, request, Action.HISTORY, topic)
        # The same caps as a socket's history reply (`Hub.history`): at most
        # `history_reply_limit` publications and `history_reply_bytes` bytes per page.
        limit = app.hub.reply_limit(
            _int_param(params.get("limit"), MAX_HISTORY_LIMIT, "limit", MAX_HISTORY_LIMIT))
        since = params.get("since")
        try:
            if since is None:
                top = await app.hub.history(topic, None, 0)
                offset = max(0, top.position.offset - limit)
            else:
                offset = _int_param(since, 0, "since", 2**53)
            page = await app.hub.history(topic, offset, limit)
        except BrokerError:
            raise HTTPError(503, "broker_unavailable", _BROKER_DOWN) from None
        if since is not None and not continues(offset, str(params.get("epoch", "")), page):
            raise HTTPError(409, "unrecoverable_position",
                            "history no longer holds that position; read it without since")
        return response({
            "topic": topic, "offset": page.position.offset, "epoch": page.position.epoch,
            "publications": [{"offset": p.offset, "data": orjson.loads(p.payload)}
                             for p in page.publications]})

    return history


def _presence_handler(app: App) -> Handler:
    async def presence(request: Request, response: ResponseFactory) -> Response:
        """``GET /api/presence?topic=T[&stats=1]``: who is subscribed to T (client id ->
        user, info), or only how many connections and distinct users."""
        topic = request.params.get("topic")
        if not isinstance(topic, str) or not valid_topic(topic):
            raise HTTPError(400, "invalid_topic", _TOPIC_RULE)
        await _check(app, request, Action.PRESENCE, topic)
        store = app.hub.presence.store
        if store is None or not app.hub.presence.enabled(topic):
            raise HTTPError(404, "presence_off", "presence is not enabled for this topic")
        try:
            if request.params.get("stats") in ("1", "true"):
                stats = await store.stats(topic)
                return response({"topic": topic, "connections": stats.connections,
                                 "users": stats.users})
            clients = await store.get(topic)
        except PresenceUnavailable:
            raise HTTPError(503, "broker_unavailable", _BROKER_DOWN) from None
        return response({"topic": topic, "clients": {
            cid: {"user": c.user, "info": c.info} for cid, c in clients.items()}})

    return presence


async def _check(app: App, request: Request, action: Action, topic: str) -> None:
    if not await app.hub.authorizer.allowed(request.principal, action, topic):
        raise HTTPError(403, "forbidden", "not allowed on this topic")


def _int_param(raw: object, default: int, name: str, maximum: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) <= maximum:
        return int(raw)
    raise HTTPError(400, "bad_field", f"{name} must be an integer from 0 to {maximum}")


def _pre_connect_size(settings: Settings) -> int:
    """The message size limit of a Centrifuge connection before its connect: the smaller
    of `connect_message_size` and `max_message_size` (0 is none)."""
    sizes = [n for n in (settings.connect_message_size, settings.max_message_size) if n]
    return min(sizes, default=0)
