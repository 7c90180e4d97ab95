"""What a Centrifuge session needs beside the shared handlers: the connect gate, in-band
authentication, connection and subscription token refresh, subscription tokens, rpc.

A session built with an `Endpoint` refuses every command before a `Connect` (close 3501),
and an empty frame too; until the connect succeeds its messages may be at most
`Settings.connect_message_size` bytes (the endpoint asks the transport so at the upgrade,
`connect` raises it), and it is closed as stale (3502) unless the connect comes within
`Settings.connect_timeout` seconds (`Pinger.wait`);
the connect authenticates the token with the app's `Authenticator` (our JWTs, or the API
key) and sets the principal. A subscription token (JWT with ``channel`` == the topic,
``sub`` == the connection's ``sub``, optional ``exp``) grants that one subscribe in place of
the topic permissions; when it expires unrefreshed, the subscription ends with an
``unsubscribe`` push (2501) and the SDK resubscribes with a new token. A topic so held
(`Session.sub_clocks`) stays held until a subscribe or unsubscribe for it takes effect
(`handlers.leave` releases it); a refused one changes nothing.
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

from ..auth import Principal, expiry_of
from ..codecs.centrifuge import (
    BAD_REQUEST_CLOSE,
    CENTRIFUGE,
    INTERNAL,
    INVALID_TOKEN,
    NOT_AVAILABLE,
    PERMISSION_DENIED,
    PING,
    STALE,
    TOKEN_EXPIRED,
    CentrifugeCodec,
)
from ..errors import ProtocolViolation, Unauthorized
from ..log import refusals
from ..protocol import CmdId, Command, Connect, Refresh, Rpc, SubRefresh, Subscribe
from . import handlers
from .pinger import Pinger

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("pubsocket.hub")

RpcHook = Callable[[Principal, str, Any], Awaitable[Any]]

def _version() -> str:
    try:
        return f"pubsocket {metadata.version('pubsocket')}"
    except metadata.PackageNotFoundError:  # running from a source tree
        return "pubsocket"


VERSION: Final = _version()

AWAITING, CONNECTED, REFUSED = 0, 1, 2  # Session.stage of a handshake session


class Endpoint:
    """What every session of one Centrifuge endpoint shares (one per `pubsub()` call)."""

    __slots__ = ("codec", "ping", "pinger", "rpc", "secured")

    def __init__(self, ping: float, *, secured: bool,
                 rpc: RpcHook | None = None, codec: CentrifugeCodec = CENTRIFUGE,
                 ping_payload: bytes = PING) -> None:
        """`ping` is the seconds between pings (0: none), `ping_payload` the codec's ping;
        `secured`: a connect needs a valid token; `rpc(principal, method, data)` answers
        rpc commands (None: error 108 "not available")."""
        self.codec = codec
        self.ping = ping
        self.secured = secured
        self.rpc = rpc
        self.pinger = Pinger(ping, ping_payload, STALE)


def _endpoint(session: Session) -> Endpoint:
    ep = session.endpoint
    assert ep is not None
    return ep


def violation(session: Session, exc: ProtocolViolation) -> None:
    """A malformed command: the protocol's disconnect, or an error reply."""
    close = _endpoint(session).codec.violation_close(exc)
    if close is None:
        session.error(exc.code, exc.message, exc.cmd_id)
    else:
        session.close(*close)


def run(session: Session, cmd: Command) -> Awaitable[None] | None:
    """Run one command of a handshake session (None when done, else what finishes it)."""
    if session.stage != CONNECTED:
        if isinstance(cmd, Connect) and session.stage == AWAITING:
            connect(session, cmd)
        elif session.stage == AWAITING:
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
        return rpc(session, cmd)
    if isinstance(cmd, SubRefresh):
        sub_refresh(session, cmd)
        return None
    if isinstance(cmd, Refresh):
        return refresh(session, cmd)
    if isinstance(cmd, Subscribe) and cmd.token:
        return token_subscribe(session, cmd)
    # A plain subscribe or an unsubscribe that takes effect ends a token-held
    # subscription in `handlers.leave` (its expiry clock with it); a refused one leaves
    # the subscription, and so its clock, as they were.
    return handlers.run(session, cmd)


def idle(session: Session) -> None:
    """A frame without a command (only pongs, or blank): before connect it is refused
    like any other command (3501), so a connection cannot idle on empty frames."""
    if session.stage == AWAITING:
        refusals.warn("before_connect", session.address)
        session.close(*BAD_REQUEST_CLOSE)


# -- connect / refresh -------------------------------------------------------------------
def connect(session: Session, cmd: Connect) -> None:
    ep = _endpoint(session)
    principal = session.principal
    if cmd.token or ep.secured:
        verified = _verify(session, cmd.token, cmd.id)
        if verified is None:
            return
        principal = verified
    session.stage = CONNECTED
    # Until now the transport took only `connect_message_size` per message (the
    # endpoint asked so at the upgrade): an unauthenticated peer buffers little.
    session.peer.set_max_message_size(session.settings.max_message_size)
    session.login(principal)
    ep.pinger.connected(session)
    ep.pinger.add(session.peer, session.wire)
    session.reply(ep.codec.connected(cmd.id, principal.client_id, VERSION,
                                     session.clock.expires_at, ep.ping))


def _verify(session: Session, token: str, cmd_id: CmdId | None) -> Principal | None:
    """The token's principal; else the refusal is sent (109 if only expired) and None."""
    auth = session.authenticator
    try:
        if auth is None or not token:
            raise Unauthorized("invalid token")
        return auth.principal_of(token)
    except Unauthorized as exc:
        if exc.message == "token expired":
            # The SDK gets a new token from its callback and connects again.
            session.stage = REFUSED
            session.reply(_endpoint(session).codec.error_code(TOKEN_EXPIRED, cmd_id))
        else:
            session.close(*INVALID_TOKEN)
        return None


def refresh(session: Session, cmd: Refresh) -> Awaitable[None] | None:
    """A new connection token: invalid or expired closes with 3500 (the SDK would
    disconnect on the error anyway); otherwise the shared refresh logic runs."""
    auth = session.authenticator
    try:
        if auth is None:
            raise Unauthorized("invalid token")
        auth.principal_of(cmd.token)
    except Unauthorized:
        session.close(*INVALID_TOKEN)
        return None
    return handlers.refresh(session, cmd)


# -- subscription tokens -------------------------------------------------------------
def _sub_claims(session: Session, topic: str, token: str,
                cmd_id: CmdId | None) -> Mapping[str, Any] | None:
    """The claims of a valid subscription token for `topic`; else the error is sent."""
    codec = _endpoint(session).codec
    auth = session.authenticator
    try:
        if auth is None:
            raise Unauthorized("invalid token")
        claims = auth.subscription_claims(token)
    except Unauthorized as exc:
        code = TOKEN_EXPIRED if exc.message == "token expired" else PERMISSION_DENIED
        session.reply(codec.error_code(code, cmd_id))
        return None
    if claims.get("channel") != topic or claims.get("sub") != session.principal.sub:
        session.reply(codec.error_code(PERMISSION_DENIED, cmd_id))
        return None
    return claims


def token_subscribe(session: Session, cmd: Subscribe) -> Awaitable[None] | None:
    """Subscribe on the strength of a subscription token (no topic permission check)."""
    claims = _sub_claims(session, cmd.topic, cmd.token or "", cmd.id)
    if claims is None:
        return None
    expires_at = expiry_of(claims)
    pending = handlers.subscribe(session, dataclasses.replace(cmd, expires_at=expires_at))
    # Held on the token only once subscribed: a subscribe the cap refused holds nothing.
    if cmd.topic in session.topics:
        _hold(session, cmd.topic, expires_at)
    if pending is None:
        return None
    return _finish_token_subscribe(session, cmd.topic, pending, expires_at)


async def _finish_token_subscribe(session: Session, topic: str,
                                  pending: Awaitable[None], expires_at: float | None) -> None:
    await pending
    if topic not in session.topics:  # the broker failed: no subscription to expire
        handlers.release_token(session, topic)
    else:  # (again: a recovering subscribe may have waited for room, `replies.when_room`)
        _hold(session, topic, expires_at)


def sub_refresh(session: Session, cmd: SubRefresh) -> None:
    codec = _endpoint(session).codec
    if cmd.topic not in session.topics:
        session.reply(codec.error_code(PERMISSION_DENIED, cmd.id))
        return
    claims = _sub_claims(session, cmd.topic, cmd.token, cmd.id)
    if claims is None:
        return
    expires_at = expiry_of(claims)
    _hold(session, cmd.topic, expires_at)
    session.reply(codec.sub_refreshed(cmd, expires_at))


def _hold(session: Session, topic: str, expires_at: float | None) -> None:
    """Mark the subscription to `topic` as held on a subscription token that expires at
    `expires_at` (None: never), replacing any earlier token's clock. A held topic is
    not re-checked by a connection refresh (`handlers.refresh`)."""
    handlers.release_token(session, topic)
    handle = None
    if expires_at is not None:
        delay = max(0.0, expires_at - time.time()) + session.settings.token_grace
        handle = asyncio.get_running_loop().call_later(delay, _sub_expired, session, topic)
    if session.sub_clocks is None:
        session.sub_clocks = {}
    session.sub_clocks[topic] = handle


def _sub_expired(session: Session, topic: str) -> None:
    if session.sub_clocks:
        session.sub_clocks.pop(topic, None)
    session.drop(topic, "expired")  # an unsubscribe push with 2501: the SDK resubscribes


# -- rpc -------------------------------------------------------------------------------
def rpc(session: Session, cmd: Rpc) -> Awaitable[None] | None:
    ep = _endpoint(session)
    if ep.rpc is None:
        session.reply(ep.codec.error_code(NOT_AVAILABLE, cmd.id))
        return None
    return _rpc(session, ep.rpc, cmd)


async def _rpc(session: Session, hook: RpcHook, cmd: Rpc) -> None:
    codec = _endpoint(session).codec
    try:
        result = await hook(session.principal, cmd.method, orjson.loads(cmd.payload))
        payload = orjson.dumps(result)
    except Exception:
        log.exception("the rpc hook failed")  # the client gets only the code
        session.reply(codec.error_code(INTERNAL, cmd.id))
        return
    session.reply(codec.rpc_result(cmd.id, payload))
