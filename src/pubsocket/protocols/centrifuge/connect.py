"""What a Centrifuge session's `Gate` does with each command beside the shared handlers:
the connect gate, in-band authentication, connection and subscription token refresh,
subscription tokens, rpc.

A session opened by an `Endpoint` refuses every command before a `Connect` (close 3501),
and an empty frame too; until the connect succeeds its messages may be at most
`Settings.connect_message_size` bytes (the endpoint asks the transport so at the upgrade,
`connect` raises it), and it is closed as stale (3502) unless the connect comes within
`Settings.connect_timeout` seconds (`Pinger.wait`);
the connect authenticates the token with the app's `Authenticator` (our JWTs, or the API
key) and sets the principal. With the endpoint's `AuthBudget`, a connect from an address
whose failed-authentication budget is spent is closed with 3013 before its token is
verified, and a token refused as invalid (bad signature, malformed, missing when
required; also on refresh) is charged to the address. An expired token is not charged:
it carries a valid signature (only the holder of the secret made it) and is what every
SDK sends after a sleep before it asks for a new one.

A subscription token (JWT with ``channel`` == the topic, ``sub`` == the connection's
``sub``, optional ``exp``) grants that one subscribe in place of the topic permissions
(its ``info``/``b64info`` and ``override`` narrow the client's presence there as the
``subs`` claim's options do; malformed ones refuse it, 103); when it expires
unrefreshed, the subscription ends with an ``unsubscribe`` push (2501) and the SDK
resubscribes with a new token. A topic so held (`Gate.sub_clocks`) stays held until a
subscribe or unsubscribe for it takes effect (`handlers.leave` releases it through
`Gate.released`); a refused one changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import orjson

from ...auth import Action, Principal, expiry_of
from ...errors import BrokerError, TokenExpired, Unauthorized
from ...hub import handlers
from ...log import refusals, unauthorized
from ...protocol import (
    CmdId,
    Command,
    Connect,
    Refresh,
    Rpc,
    SubRefresh,
    Subscribe,
    SubscribeOptions,
)
from . import server_subs
from .codec import ServerSubs
from .codes import (
    BAD_REQUEST_CLOSE,
    CHANNEL_LIMIT,
    INSUFFICIENT_STATE,
    INTERNAL,
    INVALID_TOKEN,
    NOT_AVAILABLE,
    PERMISSION_DENIED,
    TOKEN_EXPIRED,
    TOO_MANY,
    UNKNOWN_CHANNEL,
)
from .sub_options import NONE as NO_OPTIONS
from .sub_options import BadOptions
from .sub_options import parse_one as parse_options

if TYPE_CHECKING:
    from ...hub.session import Session
    from .endpoint import Gate

log = logging.getLogger("pubsocket.hub")

RpcHook = Callable[[Principal, str, Any], Awaitable[Any]]

def _version() -> str:
    try:
        return f"pubsocket {metadata.version('pubsocket')}"
    except metadata.PackageNotFoundError:  # running from a source tree
        return "pubsocket"


VERSION: Final = _version()

AWAITING, CONNECTED, REFUSED = 0, 1, 2  # Gate.stage


def run(gate: Gate, session: Session, cmd: Command) -> Awaitable[None] | None:
    """Run one command of a Centrifuge session (None when done, else what finishes it)."""
    if gate.stage != CONNECTED:
        if isinstance(cmd, Connect) and gate.stage == AWAITING:
            return connect(gate, session, cmd)
        if gate.stage == AWAITING:
            refusals.warn("before_connect", session.address)
            session.close(*BAD_REQUEST_CLOSE)  # nothing before connect
        # REFUSED: the connect was answered with an error and the client is leaving;
        # what it sent behind the connect (the JS SDK sends its subscribes along) is
        # dropped, not answered with a close that would stop the SDK reconnecting.
        return None
    if isinstance(cmd, Connect):
        session.close(*BAD_REQUEST_CLOSE)  # a second connect
        return None
    if isinstance(cmd, Rpc):
        return rpc(gate, session, cmd)
    if isinstance(cmd, SubRefresh):
        sub_refresh(gate, session, cmd)
        return None
    if isinstance(cmd, Refresh):
        return refresh(gate, session, cmd)
    if isinstance(cmd, Subscribe) and cmd.token:
        return token_subscribe(gate, session, cmd)
    # A plain subscribe or an unsubscribe that takes effect ends a token-held
    # subscription in `handlers.leave` (its expiry clock with it); a refused one leaves
    # the subscription, and so its clock, as they were.
    return handlers.run(session, cmd)


# -- connect / refresh -------------------------------------------------------------------
def connect(gate: Gate, session: Session, cmd: Connect, *, server_subs: bool = True
            ) -> Awaitable[None] | None:
    """Authenticate, then answer; with `server_subs`, the connection is first subscribed
    to its server-side channels (`server_subs`), which the reply carries: then the
    coroutine that does it is returned (the session holds later commands behind it)."""
    ep = gate.endpoint
    principal = session.principal
    if cmd.token or ep.secured:
        if ep.budget is not None and ep.budget.spent(session.address):
            session.close(*TOO_MANY)  # unverified; a reconnect code: the SDK backs off
            return None
        verified = _verify(gate, session, cmd.token, cmd.id)
        if verified is None:
            return None
        principal = verified
    # Until now the transport took only `connect_message_size` per message (the
    # endpoint asked so at the upgrade): an unauthenticated peer buffers little.
    session.peer.set_max_message_size(session.settings.max_message_size)
    session.login(principal)
    if server_subs and (cmd.subs or "subs" in principal.claims
                        or session.settings.personal_channel):
        return _connect_with_subs(gate, session, cmd)
    _connected(gate, session, cmd)
    return None


def _connected(gate: Gate, session: Session, cmd: Connect,
               subs: ServerSubs | None = None) -> None:
    ep = gate.endpoint
    gate.stage = CONNECTED
    ep.pinger.connected(session)
    ep.pinger.add(session.peer, session.wire)
    sid, node = gate.emulation or ("", "")
    session.reply(ep.codec.connected(cmd.id, session.principal.client_id, VERSION,
                                     session.expires_at, ep.ping, subs, session=sid,
                                     node=node))


async def _connect_with_subs(gate: Gate, session: Session, cmd: Connect) -> None:
    codec = gate.endpoint.codec
    # The connect came in time: a slow broker subscribe must not close it as stale.
    gate.endpoint.pinger.connected(session)
    try:
        channels, options = await server_subs.wanted(session, cmd)
        subs, cork = await server_subs.subscribe(session, channels, options)
    except server_subs.ChannelLimit:
        refusals.warn("channel_limit", session.address)
        session.close(*CHANNEL_LIMIT)
        return
    except server_subs.BadChannel as exc:
        log.warning("connect refused: %s", exc)
        gate.stage = REFUSED
        session.reply(codec.error_code(UNKNOWN_CHANNEL, cmd.id))
        return
    except BrokerError:
        gate.stage = REFUSED  # temporary: the SDK connects again
        session.reply(codec.error_code(INTERNAL, cmd.id))
        return
    if session.closed:
        for topic in subs:
            session.hub.unsubscribe_nowait(cork, topic)
        return
    # From here to the take-over, no await: nothing is delivered in between.
    _connected(gate, session, cmd, subs)
    gate.server_topics = set(subs)
    if not server_subs.take_over(session, subs, cork):
        session.close(*INSUFFICIENT_STATE)  # the SDK reconnects and recovers
        return
    await server_subs.join_all(session, subs)


def _verify(gate: Gate, session: Session, token: str,
            cmd_id: CmdId | None) -> Principal | None:
    """The token's principal; else the refusal is logged once and sent (109 if only
    expired; any other is charged to the address's budget), and None."""
    auth = session.authenticator
    try:
        if auth is None or not token:
            raise Unauthorized("invalid token")
        return auth.principal_of(token)
    except Unauthorized as exc:
        unauthorized(exc, session.address)
        _charge(gate, session, exc)
        if isinstance(exc, TokenExpired):
            # The SDK gets a new token from its callback and connects again.
            gate.stage = REFUSED
            session.reply(gate.endpoint.codec.error_code(TOKEN_EXPIRED, cmd_id))
        else:
            session.close(*INVALID_TOKEN)
        return None


def _charge(gate: Gate, session: Session, refusal: Unauthorized) -> None:
    """Hand `refusal` to the endpoint's budget, which charges the kinds it charges."""
    budget = gate.endpoint.budget
    if budget is not None:
        budget.failed(session.address, refusal)


def refresh(gate: Gate, session: Session, cmd: Refresh) -> Awaitable[None] | None:
    """A new connection token: invalid or expired closes with 3500 (the SDK would
    disconnect on the error anyway; only an invalid one is charged to the address);
    otherwise the shared refresh logic runs."""
    auth = session.authenticator
    try:
        if auth is None:
            raise Unauthorized("invalid token")
        auth.principal_of(cmd.token)
    except Unauthorized as exc:
        _charge(gate, session, exc)
        session.close(*INVALID_TOKEN)
        return None
    return handlers.refresh(session, cmd)


# -- subscription tokens -------------------------------------------------------------
def _sub_claims(gate: Gate, session: Session, topic: str, token: str,
                cmd_id: CmdId | None) -> Mapping[str, Any] | None:
    """The claims of a valid subscription token for `topic`; else the error is sent."""
    codec = gate.endpoint.codec
    auth = session.authenticator
    try:
        if auth is None:
            raise Unauthorized("invalid token")
        claims = auth.subscription_claims(token)
    except Unauthorized as exc:
        code = TOKEN_EXPIRED if isinstance(exc, TokenExpired) else PERMISSION_DENIED
        session.reply(codec.error_code(code, cmd_id))
        return None
    if claims.get("channel") != topic or claims.get("sub") != session.principal.sub:
        session.reply(codec.error_code(PERMISSION_DENIED, cmd_id))
        return None
    return claims


def token_subscribe(gate: Gate, session: Session, cmd: Subscribe) -> Awaitable[None] | None:
    """Subscribe on the strength of a subscription token (no topic permission check;
    a config file's unknown namespace is still refused)."""
    if handlers.refused(session, Action.SUBSCRIBE, cmd.topic, cmd.id):
        return None
    claims = _sub_claims(gate, session, cmd.topic, cmd.token or "", cmd.id)
    if claims is None:
        return None
    try:
        options = _token_options(claims)
    except BadOptions:  # a token the app issued with malformed options: not valid
        session.reply(gate.endpoint.codec.error_code(PERMISSION_DENIED, cmd.id))
        return None
    expires_at = expiry_of(claims)
    pending = handlers.subscribe(session, dataclasses.replace(
        cmd, expires_at=expires_at, options=options))
    # Held on the token only once subscribed: a subscribe the cap refused holds nothing.
    if session.subscribed(cmd.topic):
        _hold(gate, session, cmd.topic, expires_at)
    if pending is None:
        return None
    return _finish_token_subscribe(gate, session, cmd.topic, pending, expires_at)


def _token_options(claims: Mapping[str, Any]) -> SubscribeOptions | None:
    """A subscription token's ``info``/``b64info`` (the client's channel info in
    presence and its join) and ``override``, read as the ``subs`` claim's options are
    (`sub_options`); Centrifugo's subscription token has no ``data``. Raises
    `BadOptions`."""
    options, _ = parse_options({key: claims[key] for key in ("info", "b64info", "override")
                                if key in claims})
    return None if options is NO_OPTIONS else options


async def _finish_token_subscribe(gate: Gate, session: Session, topic: str,
                                  pending: Awaitable[None], expires_at: float | None) -> None:
    await pending
    if not session.subscribed(topic):  # the broker failed: no subscription to expire
        gate.released(topic)
    else:  # (again: a recovering subscribe may have waited for room, `replies.when_room`)
        _hold(gate, session, topic, expires_at)


def sub_refresh(gate: Gate, session: Session, cmd: SubRefresh) -> None:
    codec = gate.endpoint.codec
    if not session.subscribed(cmd.topic):
        session.reply(codec.error_code(PERMISSION_DENIED, cmd.id))
        return
    claims = _sub_claims(gate, session, cmd.topic, cmd.token, cmd.id)
    if claims is None:
        return
    expires_at = expiry_of(claims)
    _hold(gate, session, cmd.topic, expires_at)
    session.reply(codec.sub_refreshed(cmd, expires_at))


def _hold(gate: Gate, session: Session, topic: str, expires_at: float | None) -> None:
    """Mark the subscription to `topic` as held on a subscription token that expires at
    `expires_at` (None: never), replacing any earlier token's clock. A held topic is
    not re-checked by a connection refresh (`handlers.refresh`)."""
    gate.released(topic)
    handle = None
    if expires_at is not None:
        delay = max(0.0, expires_at - time.time()) + session.settings.token_grace
        handle = asyncio.get_running_loop().call_later(delay, _sub_expired, gate, session,
                                                       topic)
    if gate.sub_clocks is None:
        gate.sub_clocks = {}
    gate.sub_clocks[topic] = handle


def _sub_expired(gate: Gate, session: Session, topic: str) -> None:
    if gate.sub_clocks:
        gate.sub_clocks.pop(topic, None)
    session.drop(topic, "expired")  # an unsubscribe push with 2501: the SDK resubscribes


# -- rpc -------------------------------------------------------------------------------
def rpc(gate: Gate, session: Session, cmd: Rpc) -> Awaitable[None] | None:
    ep = gate.endpoint
    if ep.rpc is None:
        session.reply(ep.codec.error_code(NOT_AVAILABLE, cmd.id))
        return None
    return _rpc(gate, session, ep.rpc, cmd)


async def _rpc(gate: Gate, session: Session, hook: RpcHook, cmd: Rpc) -> None:
    codec = gate.endpoint.codec
    try:
        result = await hook(session.principal, cmd.method, orjson.loads(cmd.payload))
        payload = orjson.dumps(result)
    except Exception:
        log.exception("the rpc hook failed")  # the client gets only the code
        session.reply(codec.error_code(INTERNAL, cmd.id))
        return
    session.reply(codec.rpc_result(cmd.id, payload))
