"""Bearer tokens with tina4 semantics: the `API_KEY`, or a signed HS256 JWT.

`Authenticator.verify(header_values)` takes every ``Authorization`` header value of a
request and returns the token's claims, or raises `Unauthorized`. Only
``Authorization: Bearer <token>`` is read (scheme case-insensitive, exactly one header);
query-string tokens are never read. The API key is compared in constant time.

`Authenticator.authenticate(header_values, offered)` returns a `Principal` and also
reads a token from a WebSocket upgrade's subprotocol offer: the entry ``bearer``
followed by the token (tina4 3.x's convention, the only way a browser can send one):
``Sec-WebSocket-Protocol: pubsocket.v1, bearer, <token>``. An ``Authorization`` header
wins when both are present: the offer is then not read at all, and an invalid header is
a 401 even if the offer holds a good token (one credential, never a fallback). The
``bearer`` entry and the token are never selected as the subprotocol (`strip_bearer`).
Only HTTP tokens (RFC 7230 ``tchar``) can travel there: JWTs qualify, and an API key
must consist of such characters to be usable by browsers. No token is ever logged.
A JWT whose ``exp``, ``nbf`` or ``iat`` is not a finite number is invalid.
A secret shorter than RFC 7518's 32 bytes for HS256 works (Centrifugo accepts one, and
its SDKs' test suites use ``"secret"``) and is reported once, when the `Authenticator`
is made, instead of PyJWT's warning on every token.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol

from ..errors import ConfigError, TokenExpired, Unauthorized
from .principal import API_KEY_SUB, Principal

ALGORITHM = "HS256"  # pinned: a token naming another algorithm is refused
BEARER_SUBPROTOCOL = "bearer"  # matched exactly (subprotocol names are case-sensitive)
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2: an HS256 key at least as long as the hash
_REASONS: dict[type[Exception], str] = {
    jwt.InvalidSignatureError: "bad signature",
    jwt.InvalidAudienceError: "wrong audience",
    jwt.ImmatureSignatureError: "token not yet valid",
    jwt.InvalidIssuedAtError: "token issued in the future",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
    jwt.DecodeError: "not the API key and not a valid JWT",
}


def offered_subprotocols(header_values: Sequence[str]) -> list[str]:
    """Every entry of the ``Sec-WebSocket-Protocol`` headers, in order ([] if malformed:
    the handshake answers 400 for that itself; auth then simply finds no token)."""
    try:
        return [str(p) for h in header_values for p in parse_subprotocol(h)]
    except InvalidHeader:
        return []


def split_bearer(offered: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the real subprotocols, the tokens) of an offer: each ``bearer`` entry takes the
    entry after it as a token ("" when ``bearer`` is last)."""
    protocols: list[str] = []
    tokens: list[str] = []
    entries = iter(offered)
    for entry in entries:
        if entry == BEARER_SUBPROTOCOL:
            tokens.append(next(entries, ""))
        else:
            protocols.append(entry)
    return protocols, tokens


def strip_bearer(offered: Sequence[str]) -> list[str]:
    """`offered` without ``bearer`` entries and their tokens (what may be selected)."""
    if BEARER_SUBPROTOCOL not in offered:
        return list(offered)
    return split_bearer(offered)[0]


class Authenticator:
    """Verifies and issues tokens. Either secret may be absent; with neither, nothing verifies."""

    def __init__(self, api_key: str | None, secret: str | None) -> None:
        self._api_key = api_key.encode() if api_key else None
        self._secret = secret or None
        self._short = self._secret is not None and len(
            self._secret.encode()) < MIN_SECRET_BYTES
        if self._short:
            logging.getLogger("pubsocket.auth").warning(
                "SECRET is shorter than %d bytes: HS256 tokens signed with it are easier "
                "to forge (RFC 7518 3.2)", MIN_SECRET_BYTES)

    def _quiet(self) -> AbstractContextManager[None]:
        """Silences PyJWT's per-token key-length warning once `__init__` reported it."""
        return _no_key_length_warning() if self._short else nullcontext()

    def verify(self, authorization: Sequence[str]) -> Mapping[str, Any]:
        """Claims of the single Bearer token in `authorization`, or raise `Unauthorized`."""
        return self._check(self._from_header(authorization))[0]

    def authenticate(self, authorization: Sequence[str],
                     offered: Sequence[str] = ()) -> Principal:
        """The principal of the request's token, or raise `Unauthorized` (module docstring).

        `authorization`: every ``Authorization`` header value; `offered`: the upgrade's
        subprotocol entries (`offered_subprotocols`), empty for plain HTTP requests.
        """
        if authorization:
            token = self._from_header(authorization)
        else:
            tokens = split_bearer(offered)[1]
            if len(tokens) > 1:
                raise Unauthorized("exactly one bearer subprotocol entry is allowed")
            if not tokens or not tokens[0]:
                raise Unauthorized()
            token = tokens[0]
        claims, is_api_key = self._check(token)
        return Principal.from_claims(claims, is_api_key=is_api_key)

    def principal_of(self, token: str) -> Principal:
        """The principal of a bare `token` (a refresh over the socket), or `Unauthorized`."""
        claims, is_api_key = self._check(token)
        return Principal.from_claims(claims, is_api_key=is_api_key)

    def subscription_claims(self, token: str) -> Mapping[str, Any]:
        """The claims of a subscription token (a JWT with a ``channel`` claim, the
        Centrifuge SDKs' kind), or `Unauthorized`. The API key is not one."""
        claims, is_api_key = self._check(token, subscription=True)
        if is_api_key:
            raise Unauthorized("invalid token")
        return claims

    @staticmethod
    def _from_header(authorization: Sequence[str]) -> str:
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
        return token

    def _check(self, token: str, *, subscription: bool = False
               ) -> tuple[Mapping[str, Any], bool]:
        """(claims, is the API key) of `token`, or raise `Unauthorized` (no token text):
        `TokenExpired` only for a token that would be valid but for its passed ``exp``
        (signature, algorithm and every other claim checked first), so that refusal can
        be told from a forged or wrong token (web/limits.py `charged`).

        A JWT with a ``channel`` claim is a subscription token: it grants one subscribe
        and never authenticates a connection or a request (it carries no ``topics``
        claim, so as a connection token it would allow everything). Only
        `subscription=True` accepts it, and then only it."""
        if self._api_key is not None and hmac.compare_digest(token.encode(), self._api_key):
            return {"sub": API_KEY_SUB}, True
        if self._secret is None:
            raise Unauthorized("invalid token")
        try:
            with self._quiet():
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    # ``exp`` last, below: PyJWT checks it before the audience.
                    options={"require": [], "verify_exp": False, "verify_iat": True,
                             "verify_nbf": True},
                )
        except jwt.PyJWTError as exc:
            # Why, in words a person can act on (the 401 body and the log say it);
            # never the token or the library's text.
            raise Unauthorized(_REASONS.get(type(exc), "invalid token")) from None
        if ("channel" in claims) != subscription or not _times_are_numbers(claims):
            raise Unauthorized("invalid token")
        exp = claims.get("exp")
        if exp is not None and int(exp) <= time.time():  # PyJWT's rule, without leeway
            raise TokenExpired()
        return claims, False

    def issue(
        self,
        sub: str | None = None,
        ttl: float | None = 3600,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed HS256 token (JWT) for one user, to hand out from the app's login view.

        `sub`: the user id (presence groups connections by it; a token refresh must keep
        it). `ttl`: seconds until ``exp`` (None or 0: no expiry; the clients fetch a new
        token when the server announces the expiry, docs/protocol.md "Live tokens").
        `claims`: more claims, e.g. ``{"info": {"name": "Ann"}}`` (shown in presence and
        as the publisher) and ``{"topics": {"subscribe": ["room:*"], "publish": [...]}}``
        (what the connection may do, docs/protocol.md); ``iat`` defaults to now, and
        `sub`/`ttl` win over the same keys in `claims`. Raises `ConfigError` when no
        ``SECRET`` is set (never a default). Reached as ``app.auth.issue(...)``, or
        ``asgi.auth.issue(...)`` on an `ASGIApp`."""
        if self._secret is None:
            raise ConfigError("signed tokens need SECRET (or PUBSOCKET_SECRET) to be set")
        now = int(time.time())
        payload: dict[str, Any] = dict(claims or {})
        payload.setdefault("iat", now)
        if sub is not None:
            payload["sub"] = sub
        if ttl:
            payload["exp"] = now + int(ttl)
        with self._quiet():
            return jwt.encode(payload, self._secret, algorithm=ALGORITHM)


@contextmanager
def _no_key_length_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


TIME_CLAIMS = ("exp", "nbf", "iat")


def _times_are_numbers(claims: Mapping[str, Any]) -> bool:
    """True when each time claim present is a finite JSON number (RFC 7519 NumericDate).

    PyJWT checks them with ``int(value)``, so ``"exp": "9999999999"`` passes its check
    while `expiry_of` sees no number: the token would never expire. A bool is an int to
    Python and ``Infinity`` parses as a float: neither is a date."""
    for name in TIME_CLAIMS:
        if name in claims:
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if not math.isfinite(value):
                return False
    return True


def expiry_of(claims: Mapping[str, Any]) -> float | None:
    """The `exp` claim as a Unix time, if the token has one (the API key never expires)."""
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
