"""Bearer tokens with tina4 semantics: the `API_KEY`, or a signed HS256 JWT.

`Authenticator.verify(header_values)` takes every ``Authorization`` header value of a
request and returns the token's claims, or raises `Unauthorized`. Only
``Authorization: Bearer <token>`` is read (scheme case-insensitive, exactly one header);
query-string tokens are never read. The API key is compared in constant time.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from ..errors import ConfigError, Unauthorized

ALGORITHM = "HS256"  # pinned: a token naming another algorithm is refused


class Authenticator:
    """Verifies and issues tokens. Either secret may be absent; with neither, nothing verifies."""

    def __init__(self, api_key: str | None, secret: str | None) -> None:
        self._api_key = api_key.encode() if api_key else None
        self._secret = secret or None

    def verify(self, authorization: Sequence[str]) -> Mapping[str, Any]:
        """Claims of the single Bearer token in `authorization`, or raise `Unauthorized`."""
        if len(authorization) != 1:
            raise Unauthorized(
                "a valid Bearer token is required"
                if not authorization
                else "exactly one Authorization header is allowed"
            )
        scheme, _, token = authorization[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        if self._api_key is not None and hmac.compare_digest(token.encode(), self._api_key):
            return {"sub": "api_key"}
        if self._secret is None:
            raise Unauthorized("invalid token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": [], "verify_exp": True, "verify_iat": True,
                         "verify_nbf": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        return claims

    def issue(
        self,
        sub: str | None = None,
        ttl: float | None = 3600,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token. Raises `ConfigError` when no `SECRET` is set (never a default)."""
        if self._secret is None:
            raise ConfigError("signed tokens need SECRET (or PUBSOCKET_SECRET) to be set")
        now = int(time.time())
        payload: dict[str, Any] = dict(claims or {})
        payload.setdefault("iat", now)
        if sub is not None:
            payload["sub"] = sub
        if ttl:
            payload["exp"] = now + int(ttl)
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)


def expiry_of(claims: Mapping[str, Any]) -> float | None:
    """The `exp` claim as a Unix time, if the token has one (the API key never expires)."""
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
