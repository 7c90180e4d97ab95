"""The built-in pub/sub endpoint and the HTTP publish/history API, mounted with one call."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from ..auth import Authenticator, AuthorizeHook, Authorizer
from ..brokers.base import HistoryPolicy, Position
from ..codecs import PLAIN, V1
from ..config import Settings
from ..errors import HTTPError, OpError, lookup
from ..hub import Session
from ..ops import HTTP, HistoryQuery, Operations
from ..ops.api import MISSING
from ..protocol import MAX_HISTORY_LIMIT, SUBPROTOCOL
from ..protocols.centrifuge import Endpoint, RpcHook
from .app import App
from .centrifuge_wire import SUBPROTOCOL as PROTOBUF_SUBPROTOCOL
from .centrifuge_wire import ProtobufEndpoint, wants_protobuf
from .client_js import CLIENT_PATH, mount_client
from .connect_auth import ConnectHook, set_connect_hook
from .decorators import current_app
from .emulation import mount_emulation
from .http_fallback import fallback_handler
from .limits import ConnectBudget
from .metrics import mount_metrics
from .request import Request
from .response import Response, ResponseFactory
from .routing import AUTH_ATTR, PROTOCOL_ATTR, Handler, mark_auth
from .server_api import ROUTED, SERVER_API_PREFIX, ServerApi, is_server_api
from .websocket import Websocket

PUBLISH_PATH = "/api/publish"
HISTORY_PATH = "/api/history"
PRESENCE_PATH = "/api/presence"
METRICS_PATH = "/metrics"
log = logging.getLogger("pubsocket.app")


def pubsub(path: str = "/ws/chat", *, app: App | None = None, secured: bool = False,
           history: Mapping[str, HistoryPolicy | None] | None = None,
           authorize: AuthorizeHook | None = None,
           presence: Sequence[str] = (), presence_events: bool | None = None,
           publish_path: str | None = PUBLISH_PATH,
           history_path: str | None = HISTORY_PATH,
           presence_path: str | None = PRESENCE_PATH,
           metrics_path: str | None = METRICS_PATH,
           server_api: bool = True,
           client_path: str | None = CLIENT_PATH,
           protocol: Literal["plain", "centrifuge"] = "plain",
           rpc: RpcHook | None = None,
           authenticate: ConnectHook | None = None,
           emulation: bool = True,
           authenticator: Authenticator | None = None) -> Handler:
    """Mount the hub's WebSocket endpoint at `path`, plus (once per app)
    ``POST /api/publish``, ``GET /api/history``, ``GET /metrics`` and ``GET /pubsocket.js``
    (the browser client, docs/clients.md); each ``*_path`` may be None to leave it out.
    `server_api` mounts Centrifugo's server API at ``POST /api/<method>``
    (web/server_api.py, docs/centrifuge.md "Server API").

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
    `emulation` also serves clients that cannot open a WebSocket: ``POST path`` (the
    ``pubsocket.v1`` HTTP fallback, web/http_fallback.py) or, for Centrifuge,
    Centrifugo's bidirectional emulation: ``POST /connection/http_stream``,
    ``GET /connection/sse`` and ``POST /emulation`` (web/emulation.py).
    `authenticator` verifies this endpoint's tokens (default: the app's, `App.auth`);
    a Centrifugo config file's endpoint has its own (web/centrifugo_mount.py).
    """
    if authenticate is not None and protocol != "plain":
        raise ValueError("authenticate= is for the plain/pubsocket.v1 endpoint; the "
                         "Centrifuge protocol authenticates in its connect command")
    target = app or current_app()
    hub = target.hub
    auth = authenticator or target.auth
    if history:
        hub.rules.prepend(history)
    if authorize is not None:
        hub.authorizer = Authorizer(authorize, hub.authorizer.namespaces)
    if presence or presence_events is not None:
        hub.presence.enable(presence, presence_events)
    pre_connect = _pre_connect_size(target.settings)
    # Failed connect tokens are charged to the app's per-address budget (web/limits.py).
    budget = ConnectBudget(target.limits)
    endpoint = None if protocol == "plain" else Endpoint(
        target.settings.centrifuge_ping, secured=secured, rpc=rpc,
        connect_timeout=target.settings.connect_timeout, budget=budget)
    protobuf = ProtobufEndpoint(target.settings.centrifuge_ping, secured=secured, rpc=rpc,
                                connect_timeout=target.settings.connect_timeout,
                                budget=budget)

    async def pubsub_endpoint(request: Request, response: ResponseFactory) -> None:
        if endpoint is not None:
            if secured:  # every connect verifies a token: a spent address gets 429 here
                target.limits.check_address(request)
            # JSON, or Protobuf when the upgrade asks (web/centrifuge_wire.py): then a
            # binary wire, and the Protobuf twin of the endpoint.
            ep = protobuf.get() if wants_protobuf(request) else endpoint
            # Small messages until the connect command succeeds (its connect gate raises it).
            cws = await Websocket(request).connection(
                [PROTOBUF_SUBPROTOCOL] if ep is not endpoint else (),
                max_message_size=pre_connect)
            cws.close_codes = ep.close_codes
            cws.attach(Session(target.hub, cws, target.settings, principal=request.principal,
                               authenticator=auth, dialect=ep,
                               address=request.client,
                               wires=cws.binary_wires() if ep.codec.binary else cws.wires))
            return
        ws = await Websocket(request).connection(subprotocols=[SUBPROTOCOL])
        session = Session(
            target.hub, ws, target.settings,
            codec=V1 if ws.subprotocol == SUBPROTOCOL else PLAIN,
            principal=request.principal, authenticator=auth, address=request.client,
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
    setattr(pubsub_endpoint, PROTOCOL_ATTR, protocol)  # for the `serve` banner
    target.get(path)(pubsub_endpoint)
    if endpoint is not None and emulation:
        mount_emulation(target, endpoint, protobuf, pre_connect, secured=secured,
                        authenticator=auth)
    elif emulation and target.router.match("POST", path) is None:
        target.post(path)(fallback_handler(target, pubsub_endpoint))
    ops = Operations(hub, lambda: target.open_connections())
    server = ServerApi(target, ops)
    if publish_path and target.router.match("POST", publish_path) is None:
        target.post(publish_path)(_publish_handler(target, ops, server))
    for method in ROUTED if server_api else ():
        route = SERVER_API_PREFIX + method
        if method != "publish" and target.router.match("POST", route) is None:
            target.post(route)(_server_api_handler(server, method))
    if history_path and target.router.match("GET", history_path) is None:
        target.get(history_path)(mark_auth(_history_handler(target, ops), "token"))
    if presence_path and target.router.match("GET", presence_path) is None:
        target.get(presence_path)(mark_auth(_presence_handler(target, ops), "token"))
    if metrics_path and target.router.match("GET", metrics_path) is None:
        mount_metrics(target, metrics_path)
    if client_path and target.router.match("GET", client_path) is None:
        mount_client(target, client_path)
    return pubsub_endpoint


def _publish_handler(app: App, ops: Operations, server: ServerApi) -> Handler:
    async def publish(request: Request, response: ResponseFactory) -> Response:
        """``POST /api/publish {"topic": T, "data": D}``: 200 ``{"ok", "offset"?,
        "epoch"?}``, 400 or 503 with a JSON body. A request with ``X-API-Key`` (or
        ``Authorization: apikey``) is Centrifugo's publish instead (web/server_api.py)."""
        if is_server_api(request):
            return await server.handle(request, response, "publish")
        if not request.principal.authenticated:  # no Bearer token: the usual 401
            app._authenticate(request)
        body: Any = request.body
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_json", "body must be a JSON object {topic, data}")
        try:
            pub = await ops.publish(body.get("topic"), body.get("data", MISSING),
                                    principal=request.principal,
                                    idempotency_key=body.get("idempotency_key"))
        except OpError as exc:
            raise _http_error(exc) from None
        if pub.offset:
            return response({"ok": True, "offset": pub.offset, "epoch": pub.epoch})
        return response({"ok": True})

    return mark_auth(publish, "noauth")  # both dialects authenticate in the handler


def _server_api_handler(server: ServerApi, method: str) -> Handler:
    async def server_api(request: Request, response: ResponseFactory) -> Response:
        """``POST /api/<method>``: Centrifugo's server API (web/server_api.py)."""
        return await server.handle(request, response, method)

    return mark_auth(server_api, "noauth")  # the API key is checked in the handler


def _history_handler(app: App, ops: Operations) -> Handler:
    async def history(request: Request, response: ResponseFactory) -> Response:
        """``GET /api/history?topic=T[&limit=N][&since=OFFSET&epoch=E]``: the kept
        publications (newest `limit` without `since`), oldest first, with the position."""
        params = request.params
        since = params.get("since")
        # The same caps as a socket's history reply: at most `history_reply_limit`
        # publications and `history_reply_bytes` bytes per page (`Operations.history`).
        query = HistoryQuery(
            params.get("topic", ""),
            _int_param(params.get("limit"), MAX_HISTORY_LIMIT, "limit", MAX_HISTORY_LIMIT),
            None if since is None else Position(_int_param(since, 0, "since", 2**53),
                                                str(params.get("epoch", ""))),
            newest=True)
        try:
            page = await ops.history(query, principal=request.principal)
        except OpError as exc:
            raise _http_error(exc) from None
        return response({
            "topic": query.topic, "offset": page.position.offset,
            "epoch": page.position.epoch,
            "publications": [{"offset": p.offset, "data": orjson.Fragment(p.payload)}
                             for p in page.publications]})

    return history


def _presence_handler(app: App, ops: Operations) -> Handler:
    async def presence(request: Request, response: ResponseFactory) -> Response:
        """``GET /api/presence?topic=T[&stats=1]``: who is subscribed to T (client id ->
        user, info), or only how many connections and distinct users."""
        topic = request.params.get("topic", "")
        try:
            if request.params.get("stats") in ("1", "true"):
                stats = await ops.presence_stats(topic, principal=request.principal)
                return response({"topic": topic, "connections": stats.connections,
                                 "users": stats.users})
            clients = await ops.presence(topic, principal=request.principal)
        except OpError as exc:
            raise _http_error(exc) from None
        return response({"topic": topic, "clients": {
            cid: {"user": c.user, "info": c.info} for cid, c in clients.items()}})

    return presence


def _http_error(exc: OpError) -> HTTPError:
    """Our HTTP API's refusal for `exc` (ops/errors.py `HTTP`)."""
    status, code = lookup(HTTP, exc)
    return HTTPError(status, str(code), exc.message)


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
