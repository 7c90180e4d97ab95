"""`Principal`: who is on the other end of one request or connection.

Every request has one (``request.principal``): built by `Authenticator.authenticate` from
a verified token on secured routes, `Principal.anonymous()` elsewhere. It is frozen; its
claims are a read-only view. `client_id` is random per principal, i.e. per connection
(128 bits from `secrets`, URL-safe), so it can name a connection cluster-wide.

The API key is one fixed principal: ``sub == API_KEY_SUB`` (``"api_key"``, the value
`Authenticator.verify` has always returned), ``is_api_key=True``, no ``topics`` claim, so
only the app hook limits it. A JWT whose ``sub`` is ``"api_key"`` is *not* the API key:
check `is_api_key`, never the ``sub``, to recognise it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .permissions import TopicRules, compile_topics

API_KEY_SUB = "api_key"  # the API key principal's sub (see the module docstring)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def new_client_id() -> str:
    """A fresh random client id (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


# eq=False: a principal is one connection's identity, compared and hashed by identity
# (its claims mapping is not hashable, and two tabs of one user are two principals).
@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """An authenticated (or anonymous) identity plus this connection's client id.

    `sub` is the token's ``sub`` (None for anonymous, or a token without one);
    `authenticated` says a token was verified; `info` is the ``info`` claim (any JSON
    value, shown in presence); `rules` is the compiled ``topics`` claim, None when the
    token has none (then only the app hook limits this principal).
    """

    sub: str | None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    client_id: str = field(default_factory=new_client_id)
    authenticated: bool = False
    is_api_key: bool = False
    info: Any = None
    rules: TopicRules | None = field(default=None, repr=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, is_api_key: bool = False) -> Principal:
        """The principal of verified `claims` (the ``topics`` claim is compiled here, once)."""
        frozen = MappingProxyType(dict(claims))
        sub = frozen.get("sub")
        sub = sub if isinstance(sub, str) else None  # PyJWT already rejects non-str subs
        rules = compile_topics(frozen["topics"], sub) if "topics" in frozen else None
        return cls(sub=sub, claims=frozen, authenticated=True, is_api_key=is_api_key,
                   info=frozen.get("info"), rules=rules)

    @classmethod
    def anonymous(cls) -> Principal:
        """A principal for a route that is not secured: no sub, no claims, no rules."""
        return cls(sub=None)

    @property
    def user(self) -> str | None:
        """The user presence groups connections by: the `sub` (None: this connection only)."""
        return self.sub
