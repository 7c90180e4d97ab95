"""`Identity`, a base of `Session`: who is on the other end of one connection, and until when.

What a session derives from its `principal` (anonymous unless the transport or an
in-band connect authenticated it; `Session.login` replaces it and keeps the user
registry, which the session owns, in step): the presence view (`client`, `client_id`),
the publisher attestation every publish carries (`publisher`, made once per principal),
and the token's timers (`clock`, `hub.lifetime`): the expiry notice where the codec can
refresh, the 4001 close. The timers and the attestation live in the session's `Rare`
state, made on first use, so an idle connection whose token never expires holds none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CloseCode
from ..presence.base import ClientInfo
from .lifetime import TokenClock
from .publishing import publisher_of
from .subscribed import CompactState

if TYPE_CHECKING:
    from ..auth import Authenticator, Principal
    from ..brokers.base import Publisher
    from ..codecs import Codec
    from ..config import Settings
    from .core import Hub


class Identity(CompactState):
    """The principal of a `Session` and what follows from it (module docstring); the
    session declares the slots."""

    __slots__ = ()

    hub: Hub
    settings: Settings
    principal: Principal
    authenticator: Authenticator | None

    @property
    def codec(self) -> Codec:
        raise NotImplementedError

    def reply(self, payload: bytes | None) -> None:
        raise NotImplementedError

    def close(self, code: int, reason: str) -> None:
        raise NotImplementedError

    @property
    def clock(self) -> TokenClock:
        """The token's timers (`hub.lifetime`); made on first use (a connection whose
        token never expires, an anonymous one say, holds none)."""
        rare = self.rare
        clock = rare.clock
        if clock is None:
            can_refresh = self.codec.refreshable and self.authenticator is not None
            clock = rare.clock = TokenClock(self._expired,
                                             self._expiring if can_refresh else None,
                                             self.settings.token_grace)
        return clock

    @property
    def expires_at(self) -> float | None:
        """When the current token expires (Unix time; None: never)."""
        clock = self._rare.clock if self._rare is not None else None
        return clock.expires_at if clock is not None else None

    @property
    def client(self) -> ClientInfo:
        """This connection as presence shows it."""
        p = self.principal
        return ClientInfo(p.client_id, p.user, p.info)

    @property
    def client_id(self) -> str:
        return self.principal.client_id

    @property
    def publisher(self) -> Publisher | None:
        """Who this connection's publishes are attested as (`publisher_of` the current
        principal, made once per principal: a refresh or login makes it anew)."""
        rare = self.rare
        cached = rare.publisher
        if cached is None or cached[0] is not self.principal:
            cached = rare.publisher = (self.principal, publisher_of(self.principal))
        return cached[1]

    def _expiring(self, expires_at: float) -> None:
        self.reply(self.codec.expiring(expires_at))

    def _expired(self) -> None:
        self.close(CloseCode.AUTH_EXPIRED, "token expired")
