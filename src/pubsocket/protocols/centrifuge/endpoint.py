"""How the Centrifuge protocol plugs into the generic session (`hub.hook`).

`Endpoint` is the `Dialect` one ``pubsub(..., protocol="centrifuge")`` call makes: the
codec, the close codes, the pinger and the rpc hook every session of the endpoint
shares. Each session it opens gets a `Gate`, the `SessionHook` holding that
connection's Centrifuge state: its handshake stage and the topics it holds on
subscription tokens (with their expiry clocks). What the gate does with each command
is in `connect`.

An endpoint may be given an `AuthBudget` (the app's per-address failed-authentication
budget, web/limits.py): a connect whose token fails verification is charged to the
peer's address (not one only expired: the budget decides, `limits.charged`), and a
connect from an address whose budget is spent is closed with 3013 "too many requests"
(the SDKs reconnect with backoff) before its token is verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
from typing import TYPE_CHECKING, Protocol

from ...errors import ProtocolViolation, Unauthorized
from ...log import refusals
from ...protocol import Command
from . import connect
from .codec import CENTRIFUGE, PING, CentrifugeCodec
from .codes import BAD_REQUEST_CLOSE, CLOSE_CODES, STALE
from .connect import AWAITING, CONNECTED, RpcHook
from .parse import SubscriptionTypeRefused
from .pinger import Pinger

if TYPE_CHECKING:
    from ...hub.session import Session


class AuthBudget(Protocol):
    """Failed authentications per peer address (the app's, web/limits.py `ConnectBudget`);
    `address` is the session's (`Session.address`: the transport's peer name)."""

    def spent(self, address: object) -> bool:
        """Whether `address` may not try a token now (the refusal is logged)."""
        ...

    def failed(self, address: object, refusal: Unauthorized) -> None:
        """Charge `refusal`, a failed authentication, to `address` if the budget charges
        that kind (an expired token it does not: web/limits.py `charged`)."""
        ...


class Endpoint:
    """What every session of one Centrifuge endpoint shares (one per `pubsub()` call)."""

    __slots__ = ("budget", "codec", "connect_timeout", "ping", "pinger", "rpc", "secured")

    close_codes: Mapping[int, tuple[int, str]] = CLOSE_CODES

    def __init__(self, ping: float, *, secured: bool, connect_timeout: float = 0.0,
                 rpc: RpcHook | None = None, codec: CentrifugeCodec = CENTRIFUGE,
                 ping_payload: bytes = PING, budget: AuthBudget | None = None) -> None:
        """`ping` is the seconds between pings (0: none), `ping_payload` the codec's ping
        (Protobuf's is an empty reply); a session that has not
        connected within `connect_timeout` seconds is closed as stale (0: only pings
        count, `Pinger.wait`); `secured`: a connect needs a valid token;
        `rpc(principal, method, data)` answers rpc commands (None: error 108 "not
        available"); `budget` charges failed connect tokens (None: nothing is charged,
        see the module docstring)."""
        self.codec = codec
        self.budget = budget
        self.ping = ping
        self.connect_timeout = connect_timeout
        self.secured = secured
        self.rpc = rpc
        self.pinger = Pinger(ping, ping_payload, STALE)

    def open(self, session: Session) -> Gate:
        """The hook of a new session: nothing runs before its connect command."""
        self.pinger.wait(session, self.connect_timeout)
        return Gate(self)


class _Held:
    """A gate's seldom used state (see `Gate`), made the first time one is set."""

    __slots__ = ("emulation", "server_topics", "sub_clocks")

    def __init__(self) -> None:
        self.emulation: tuple[str, str] | None = None
        self.sub_clocks: dict[str, asyncio.TimerHandle | None] | None = None
        self.server_topics: set[str] | None = None


class Gate:
    """One Centrifuge connection's state: refuses everything before a `Connect`, then
    runs the protocol's own commands (`connect`) beside the shared handlers.

    `emulation` is the (session id, node) of an emulated connection (web/emulation.py):
    its connect reply names them, so the client can POST its commands. `sub_clocks`:
    topics held on a subscription token -> its expiry clock (None: no exp), made by the
    first such subscribe. `server_topics`: topics subscribed on the server's word at
    connect (`server_subs`), granted by the server, not the token's permissions, so a
    token refresh keeps them. The three are None until set and live in one object made
    then: most connections never set any (docs/design.md "What an idle subscribed
    connection holds")."""

    __slots__ = ("_held", "endpoint", "stage")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.stage = AWAITING
        self._held: _Held | None = None

    def _more(self) -> _Held:
        held = self._held
        if held is None:
            held = self._held = _Held()
        return held

    @property
    def emulation(self) -> tuple[str, str] | None:
        return self._held.emulation if self._held is not None else None

    @emulation.setter
    def emulation(self, value: tuple[str, str] | None) -> None:
        if value is not None or self._held is not None:
            self._more().emulation = value

    @property
    def sub_clocks(self) -> dict[str, asyncio.TimerHandle | None] | None:
        return self._held.sub_clocks if self._held is not None else None

    @sub_clocks.setter
    def sub_clocks(self, value: dict[str, asyncio.TimerHandle | None] | None) -> None:
        if value is not None or self._held is not None:
            self._more().sub_clocks = value

    @property
    def server_topics(self) -> set[str] | None:
        return self._held.server_topics if self._held is not None else None

    @server_topics.setter
    def server_topics(self, value: set[str] | None) -> None:
        if value is not None or self._held is not None:
            self._more().server_topics = value

    @property
    def ready(self) -> bool:
        return self.stage == CONNECTED

    def run(self, session: Session, cmd: Command) -> Awaitable[None] | None:
        return connect.run(self, session, cmd)

    def idle(self, session: Session) -> None:
        """A frame without a command (only pongs, or blank): before connect it is
        refused like any other command (3501), so a connection cannot idle on empty
        frames."""
        if self.stage == AWAITING:
            refusals.warn("before_connect", session.address)
            session.close(*BAD_REQUEST_CLOSE)

    def violation(self, session: Session, exc: ProtocolViolation) -> None:
        """A malformed command: the protocol's disconnect, or an error reply."""
        if isinstance(exc, SubscriptionTypeRefused):
            # A well-formed subscribe of a type not served: refused like any command
            # before the connect, else answered with Centrifuge's own code.
            if self.stage == AWAITING:
                refusals.warn("before_connect", session.address)
                session.close(*BAD_REQUEST_CLOSE)
            elif self.stage == CONNECTED:
                session.reply(self.endpoint.codec.error_code(exc.reply_code, exc.cmd_id))
            return
        close = self.endpoint.codec.violation_close(exc)
        if close is None:
            session.error(exc.code, exc.message, exc.cmd_id)
        else:
            session.close(*close)

    def released(self, topic: str) -> None:
        """`topic` is no longer held on a subscription token (its expiry clock stops) nor
        as a server-side subscription."""
        if self.server_topics:
            self.server_topics.discard(topic)
        clocks = self.sub_clocks
        if clocks and topic in clocks and (handle := clocks.pop(topic)) is not None:
            handle.cancel()

    def held(self) -> Collection[str]:
        if self.server_topics:
            return {*self.server_topics, *(self.sub_clocks or ())}
        return self.sub_clocks or ()

    def closed(self, session: Session) -> None:
        pinger = self.endpoint.pinger
        pinger.discard(session.peer)
        pinger.connected(session)
        for handle in (self.sub_clocks or {}).values():
            if handle is not None:
                handle.cancel()
        self.sub_clocks = None
