"""Centrifugo's server HTTP API (``POST /api/<method>``) over the operations layer.

The official clients (PyPI ``cent`` 5.x) work unchanged: each method takes a JSON object
and answers HTTP 200 with ``{"result": {...}}`` or ``{"error": {"code", "message"}}``
(Centrifugo's numeric codes, ops/errors.py `CENTRIFUGO`). ``batch`` runs
``{"commands": [{"<method>": {...}}, ...]}`` in order and answers
``{"replies": [{"<method>": result} | {"error": ...}, ...]}``.

Auth: the ``X-API-Key`` header, or ``Authorization: apikey <key>``, compared with the
server API key (`Settings.server_api_key`, a Centrifugo file's ``http_api.key``), else
the API key (``API_KEY``), by `hmac.compare_digest`; without a server API key, a Bearer
API key, verified by the app like on every route, is accepted too. A missing or wrong key is
HTTP 401 (charged to the peer's failed-authentication budget). Every request is charged
one token of the API key's HTTP rate limit, and each further command of a batch one
more, before any work. Bodies are bounded by `max_body_size`, batches by
`server_api_batch_max`, replies by the history caps and `server_api_channels_max`.

``POST /api/publish`` is shared with pubsocket's own dialect: a request carrying
``X-API-Key`` or ``Authorization: apikey`` is Centrifugo's; any other (a Bearer token,
``{"topic", "data"}``) is ours (web/pubsub.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..auth.principal import API_KEY_SUB, Principal
from ..brokers.base import Position, Publication
from ..errors import (
    BadRequest,
    CloseCode,
    LimitExceeded,
    MethodNotFound,
    NotAvailable,
    OpError,
    Unauthorized,
    lookup,
)
from ..ops import CENTRIFUGO, HistoryQuery, Operations
from ..ops.api import MISSING
from ..ops.errors import CENTRIFUGO_MESSAGES
from ..protocol import SubscribeOptions
from ..protocols.centrifuge.sub_options import NONE, BadOptions, parse_one
from .app import App
from .request import Request
from .response import Response, ResponseFactory

SERVER_API_PREFIX = "/api/"  # one static route per method: an app's own /api/{x} routes
# keep working beside them (the first match wins, static routes first)
Body = dict[str, Any]
Method = Callable[[Operations, Body], Awaitable[Body]]
_JSON = "application/json"


def is_server_api(request: Request) -> bool:
    """True when `request` speaks Centrifugo's dialect: it carries ``X-API-Key`` or an
    ``Authorization: apikey`` header."""
    if "x-api-key" in request.headers:
        return True
    return any(v.strip()[:7].lower() == "apikey " for v in request.headers.getall(
        "authorization"))


class ServerApi:
    """The Centrifugo dialect of one app (see the module docstring)."""

    def __init__(self, app: App, ops: Operations) -> None:
        self.app = app
        self.ops = ops
        self._principal = Principal.from_claims({"sub": API_KEY_SUB}, is_api_key=True)

    async def handle(self, request: Request, response: ResponseFactory, method: str
                     ) -> Response:
        """Authenticate, charge, parse, run `method`; always a JSON reply."""
        self._authenticate(request)
        try:
            params = _params(request.raw_body)
            if method == "batch":
                body = await self._batch(request, params)
            else:
                body = {"result": await self.call(method, params)}
        except OpError as exc:
            body = _error(exc)
        return response(orjson.dumps(body), content_type=_JSON)

    async def call(self, method: str, params: object) -> Body:
        """One command's result body; raises `OpError`."""
        run = METHODS.get(method)
        if run is None:
            raise MethodNotFound()
        if not isinstance(params, dict):
            raise BadRequest("the command's params must be an object")
        return await run(self.ops, params)

    async def _batch(self, request: Request, params: Body) -> Body:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise BadRequest("commands must be a list")
        cap = self.app.settings.server_api_batch_max
        if cap and len(commands) > cap:
            raise LimitExceeded(f"at most {cap} commands per batch")
        for _ in range(len(commands) - 1):  # the request itself paid for the first
            self.app.limits.charge(request)
        replies: list[Body] = []
        for command in commands:
            try:
                if not isinstance(command, dict) or len(command) != 1:
                    raise BadRequest("each command is {method: params}")
                ((method, sub),) = command.items()
                if method == "batch":
                    raise BadRequest("batch cannot be nested")
                replies.append({method: await self.call(method, sub)})
            except OpError as exc:
                replies.append(_error(exc))
        return {"replies": replies}

    def _authenticate(self, request: Request) -> None:
        settings = self.app.settings
        if request.principal.is_api_key and not settings.server_api_key:
            return  # a Bearer API key, verified (and charged) at dispatch
        limits = self.app.limits
        limits.before_auth(request)
        given = _given_key(request)
        key = settings.server_api_key or settings.api_key
        if given is None or not key or not hmac.compare_digest(given.encode(), key.encode()):
            refusal = Unauthorized("a valid API key is required")
            limits.auth_failed(request, refusal)  # an API key never expires: charged
            raise refusal
        request.principal = self._principal  # immutable: one for every request
        limits.charge(request)


def _given_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is not None:
        return key.strip()
    for value in request.headers.getall("authorization"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "apikey":
            return rest.strip()
    return None


def _params(raw: bytes) -> Body:
    if not raw:
        return {}
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(params, dict):
        raise BadRequest("body must be a JSON object")
    return params


def _error(exc: OpError) -> Body:
    code = lookup(CENTRIFUGO, exc)
    return {"error": {"code": code, "message": CENTRIFUGO_MESSAGES.get(code, exc.message)}}


def _position(pub: Publication) -> Body:
    return {"offset": pub.offset, "epoch": pub.epoch} if pub.epoch else {}


def _pub(pub: Publication) -> Body:
    body: Body = {"data": orjson.Fragment(pub.payload)}
    if pub.offset:
        body["offset"] = pub.offset
    if pub.publisher is not None:
        info: Body = {"client": pub.publisher.client, "user": pub.publisher.user or ""}
        if pub.publisher.info:
            info["conn_info"] = orjson.Fragment(pub.publisher.info)
        body["info"] = info
    return body


def _since(value: object) -> Position | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("since must be {offset, epoch}")
    offset, epoch = value.get("offset", 0), value.get("epoch", "")
    if (not isinstance(offset, int) or isinstance(offset, bool) or offset < 0
            or not isinstance(epoch, str)):
        raise BadRequest("since must be {offset, epoch}")
    return Position(offset, epoch)


def _int(value: object, field: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{field} must be an integer")
    return value


# -- the methods ------------------------------------------------------------------------
async def _publish(ops: Operations, p: Body) -> Body:
    pub = await ops.publish(p.get("channel"), p.get("data", MISSING),
                            idempotency_key=p.get("idempotency_key"))
    return _position(pub)


async def _broadcast(ops: Operations, p: Body) -> Body:
    outcomes = await ops.broadcast(p.get("channels"), p.get("data", MISSING),
                                   idempotency_key=p.get("idempotency_key"))
    return {"responses": [_error(o) if isinstance(o, OpError) else {"result": _position(o)}
                          for o in outcomes]}


async def _subscribe(ops: Operations, p: Body) -> Body:
    await ops.subscribe_user(p.get("user"), p.get("channel"), p.get("client"),
                             p.get("recover_since"), _sub_options(p))
    return {}


def _sub_options(p: Body) -> SubscribeOptions | None:
    """The subscribe's ``info``/``b64info``, ``data``/``b64data`` and ``override``,
    read as a ``subs`` claim's channel options are (`sub_options.parse_one`), else
    `BadRequest` (107) before anything is subscribed."""
    try:
        opts, _ = parse_one(p)
    except BadOptions as exc:
        raise BadRequest(str(exc)) from None
    return None if opts is NONE else opts  # force_recovery/positioning: as in the claim


async def _unsubscribe(ops: Operations, p: Body) -> Body:
    await ops.unsubscribe_user(p.get("user"), p.get("channel"), p.get("client"))
    return {}


async def _disconnect(ops: Operations, p: Body) -> Body:
    how = p.get("disconnect") or {}
    if not isinstance(how, dict):
        raise BadRequest("disconnect must be {code, reason}")
    await ops.disconnect_user(p.get("user"), p.get("client"), how.get("code"),
                              how.get("reason"))
    return {}


async def _refresh(ops: Operations, p: Body) -> Body:
    # A connection's expiry is its token's: only `expired: true` (close it now) applies.
    if p.get("expire_at") is not None:
        raise NotAvailable("expire_at is not supported: a connection expires with its token")
    if p.get("expired") is True:
        await ops.disconnect_user(p.get("user"), p.get("client"),
                                  int(CloseCode.AUTH_EXPIRED), "token expired")
    else:
        ops.name(p.get("user"), "user")
    return {}


async def _presence(ops: Operations, p: Body) -> Body:
    clients = await ops.presence(p.get("channel"))
    out: Body = {}
    for cid, c in clients.items():
        entry: Body = {"client": cid, "user": c.user or ""}
        if c.info is not None:
            entry["conn_info"] = c.info
        if c.chan_info is not None:  # a server-side subscription's info (subs, subscribe)
            entry["chan_info"] = c.chan_info
        out[cid] = entry
    return {"presence": out}


async def _presence_stats(ops: Operations, p: Body) -> Body:
    stats = await ops.presence_stats(p.get("channel"))
    return {"num_clients": stats.connections, "num_users": stats.users}


async def _history(ops: Operations, p: Body) -> Body:
    reverse = p.get("reverse", False)
    if not isinstance(reverse, bool):
        raise BadRequest("reverse must be a boolean")
    page = await ops.history(HistoryQuery(p.get("channel"), _int(p.get("limit"), "limit"),
                                          _since(p.get("since")), reverse),
                             require_history=True)
    return {"publications": [_pub(x) for x in page.publications],
            "offset": page.position.offset, "epoch": page.position.epoch}


async def _history_remove(ops: Operations, p: Body) -> Body:
    await ops.history_remove(p.get("channel"))
    return {}


async def _channels(ops: Operations, p: Body) -> Body:
    channels = await ops.channels(p.get("pattern"))  # every node's (hub/cluster.py)
    return {"channels": {name: {"num_clients": n} for name, n in channels.items()}}


async def _info(ops: Operations, p: Body) -> Body:
    return {"nodes": [{"uid": node.uid, "name": node.name, "version": node.version,
                       "num_clients": node.clients, "num_users": node.users,
                       "num_channels": node.topics, "num_subs": node.subscriptions,
                       "uptime": node.uptime} for node in ops.nodes()]}


METHODS: dict[str, Method] = {
    "publish": _publish, "broadcast": _broadcast, "subscribe": _subscribe,
    "unsubscribe": _unsubscribe, "disconnect": _disconnect, "refresh": _refresh,
    "presence": _presence, "presence_stats": _presence_stats, "history": _history,
    "history_remove": _history_remove, "channels": _channels, "info": _info,
}
# Centrifugo methods pubsocket does not serve (PRO, user status, devices, push): known
# names, answered with error 104 rather than HTTP 404.
UNSERVED = ("connections", "update_user_status", "get_user_status", "delete_user_status",
            "block_user", "unblock_user", "revoke_token", "invalidate_user_tokens",
            "device_register", "device_update", "device_remove", "device_list",
            "device_topic_list", "user_topic_list", "device_topic_update",
            "user_topic_update", "send_push_notification", "update_push_status",
            "cancel_push")
ROUTED = (*METHODS, "batch", *UNSERVED)  # every method with a route of its own
