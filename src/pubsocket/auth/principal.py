"""`Principal`: who is on the other end of one request or connection.

Every request has one (``request.principal``): built by `Authenticator.authenticate` from
a verified token on secured routes, `Principal.anonymous()` elsewhere. It is frozen; its
claims are a read-only view. `client_id` is random per principal, i.e. per connection
(128 bits from `secrets`, URL-safe, drawn on first use), so it can name a connection
cluster-wide.

The API key is one fixed principal: ``sub == API_KEY_SUB`` (``"api_key"``, the value
`Authenticator.verify` has always returned), ``is_api_key=True``, no ``topics`` claim, so
only the app hook limits it. A JWT whose ``sub`` is ``"api_key"`` is *not* the API key:
check `is_api_key`, never the ``sub``, to recognise it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from types import MappingProxyType
from typing import Any

from .permissions import TopicRules, compile_topics

API_KEY_SUB = "api_key"  # the API key principal's sub (see the module docstring)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def new_client_id() -> str:
    """A fresh random client id (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


class Principal:
    """An authenticated (or anonymous) identity plus this connection's client id.

    `sub` is the token's ``sub`` (None for anonymous, or a token without one);
    `authenticated` says a token was verified; `info` is the ``info`` claim (any JSON
    value, shown in presence); `rules` is the compiled ``topics`` claim, None when the
    token has none (then only the app hook limits this principal).

    Frozen (assigning raises `dataclasses.FrozenInstanceError`) and compared and hashed
    by identity: a principal is one connection's identity (its claims mapping is not
    hashable, and two tabs of one user are two principals). The client id is drawn on
    first use: an idle connection that never shows it (a plain subscriber) keeps no
    string for it (docs/design.md "What an idle subscribed connection holds").
    """

    # An anonymous principal holds only its client id: its other fields are these class
    # attributes. One with any other value is an `_Identified`, which has a slot each.
    __slots__ = ("_client_id",)

    _client_id: str | None
    sub: str | None = None
    claims: Mapping[str, Any] = _EMPTY
    authenticated: bool = False
    is_api_key: bool = False
    info: Any = None
    rules: TopicRules | None = None

    def __new__(cls, sub: str | None = None, claims: Mapping[str, Any] = _EMPTY,
                client_id: str | None = None, authenticated: bool = False,
                is_api_key: bool = False, info: Any = None,
                rules: TopicRules | None = None) -> Principal:
        if cls is Principal and (sub is not None or claims is not _EMPTY or authenticated
                                 or is_api_key or info is not None or rules is not None):
            cls = _Identified
        return object.__new__(cls)

    def __init__(self, sub: str | None, claims: Mapping[str, Any] = _EMPTY,
                 client_id: str | None = None, authenticated: bool = False,
                 is_api_key: bool = False, info: Any = None,
                 rules: TopicRules | None = None) -> None:
        """`client_id` None: a fresh random one, drawn when first read."""
        init = object.__setattr__
        init(self, "_client_id", client_id)
        if type(self) is not Principal:  # the anonymous defaults are the class's
            init(self, "sub", sub)
            init(self, "claims", claims)
            init(self, "authenticated", authenticated)
            init(self, "is_api_key", is_api_key)
            init(self, "info", info)
            init(self, "rules", rules)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return (f"Principal(sub={self.sub!r}, client_id={self.client_id!r}, "
                f"authenticated={self.authenticated!r}, is_api_key={self.is_api_key!r}, "
                f"info={self.info!r})")

    @property
    def client_id(self) -> str:
        """This connection's id (22 URL-safe characters, random), drawn on first read."""
        client_id = self._client_id
        if client_id is None:
            client_id = new_client_id()
            object.__setattr__(self, "_client_id", client_id)
        return client_id

    def with_client_id(self, client_id: str) -> Principal:
        """This identity with `client_id` (a refreshed token keeps the connection's id)."""
        return Principal(self.sub, self.claims, client_id, self.authenticated,
                         self.is_api_key, self.info, self.rules)

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


class _Identified(Principal):
    """A principal with a sub, claims, a flag, info or rules (see `Principal`)."""

    __slots__ = ("authenticated", "claims", "info", "is_api_key", "rules", "sub")
