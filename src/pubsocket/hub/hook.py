"""The session hook: how a wire protocol that needs more than a codec plugs into `Session`.

A codec alone (seed JSON, ``pubsocket.v1``) needs nothing else: the generic session
runs every command through `hub.handlers`. A protocol with rules of its own around the
commands (Centrifuge: a connect command first, in-band tokens, subscription tokens,
pings; `pubsocket.protocols.centrifuge`) is a `Dialect`: its codec, the close codes its
connections speak, and `open`, which gives each session a `SessionHook` holding that
connection's protocol state. The session calls the hook at these points only, and
never names a protocol:

* `open` when the session is made (start timers, e.g. a connect deadline);
* `run` for every command but a publish the hook is `ready` for (a gate: before
  its handshake the hook answers or refuses; after it, it may hand on to
  `hub.handlers.run`); returns None when done, else what finishes the command;
* `idle` for a frame that carried no command;
* `violation` for a malformed command (an error reply, or the protocol's close);
* `released` when a subscription ends, so state held per topic goes with it;
  `held` names the topics granted by something other than the connection's token
  (a connection token refresh does not re-check them);
* `closed` once, when the connection has gone.

A session without a dialect holds None in one slot: the plain path pays nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping
from typing import TYPE_CHECKING, Protocol

from ..codecs import Codec
from ..errors import ProtocolViolation
from ..protocol import Command

if TYPE_CHECKING:
    from .session import Session


class SessionHook(Protocol):
    """One connection's protocol-owned state and the calls its session makes into it."""

    @property
    def ready(self) -> bool:
        """True once publishes may take the session's pipelined path (handshake done)."""
        ...

    def run(self, session: Session, cmd: Command) -> Awaitable[None] | None: ...

    def idle(self, session: Session) -> None: ...

    def violation(self, session: Session, exc: ProtocolViolation) -> None: ...

    def released(self, topic: str) -> None: ...

    def held(self) -> Collection[str]: ...

    def closed(self, session: Session) -> None: ...


class Dialect(Protocol):
    """What every session of one endpoint of a protocol shares (made once per endpoint)."""

    @property
    def codec(self) -> Codec: ...

    @property
    def close_codes(self) -> Mapping[int, tuple[int, str]] | None:
        """How the transport translates its closes for this protocol (None: as they are);
        the endpoint sets them as `Connection.close_codes`."""
        ...

    def open(self, session: Session) -> SessionHook: ...
