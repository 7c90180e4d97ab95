"""Per-client HTTP rate limits (issue 15): token buckets keyed by who is asking.

Every request to a route that needs a token is charged one token to its client before
the handler runs: the authenticated principal (``api_key``, or ``sub:<sub>``), else the
peer address. An empty bucket is a 429 with ``Retry-After`` (the connection stays open);
while it stays empty, the same ``Authorization`` header is refused before it is
verified again; so is one lately refused as an expired token (401).
Failed authentications are charged to the peer address on a second, smaller budget;
once it is spent, that address's token routes answer 429 without verifying anything, so
a flood of bad tokens costs one dict lookup per request. A Centrifuge connect command's
token is charged to the same budget (`ConnectBudget`, given to the Centrifuge endpoints),
and a connect from a spent address is closed (3013) without verifying it. Which refusals
are charged is decided here only (`charged`), for every front door: every one but an
expired token.
Refusals are logged through `pubsocket.log.refusals` (rate-limited, never the token):
429s here, 401s and 403s once by `App._dispatch`.

The tables are bounded: past `max_keys` clients, idle (refilled) buckets are dropped,
then the oldest tenth, so a flood of fresh keys costs amortized O(1) and cannot grow
memory (a dropped busy bucket starts full again: only a client with thousands of
addresses or principals gains from it).
"""

from __future__ import annotations

import math
import time

from ..auth.principal import Principal
from ..config import Settings
from ..errors import RateLimited, TokenExpired, Unauthorized
from ..log import refusals
from .request import Request

MAX_KEYS = 10_000
MAX_LIMITED = 1024  # refused Authorization headers remembered, of each kind (<= 8 KiB each)


class ClientLimiter:
    """`rate` tokens per second up to `burst`, one bucket per key; ``rate == 0`` never
    limits. Buckets are (tokens, last refill) pairs in an insertion-ordered dict."""

    __slots__ = ("_buckets", "_burst", "_max_keys", "_rate")

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + (now - last) * self._rate)

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token (0: it has one now). Spends nothing."""
        if not self._rate:
            return 0.0
        tokens = self._level(key, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def take(self, key: str) -> float:
        """Spend a token of `key`: 0 when it had one, else the seconds until it will."""
        if not self._rate:
            return 0.0
        now = time.monotonic()
        tokens = self._level(key, now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self._rate
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._evict(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def _evict(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self._burst]
        for k in full:
            del self._buckets[k]
        # Still full: drop the oldest tenth at once, so the scan above runs once per
        # max_keys/10 new keys, not on every one.
        while len(self._buckets) >= self._max_keys * 0.9:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(principal: Principal, request: Request) -> str:
    """Who pays for `request`: the principal when it is authenticated, else the peer."""
    if principal.is_api_key:
        return "api_key"
    if principal.authenticated and principal.sub is not None:
        return "sub:" + principal.sub
    return address_key(request)


def address_key(request: Request) -> str:
    """The peer address (the host only: a client's ports are free to choose)."""
    return host_key(request.client)


def host_key(address: object) -> str:
    """`address_key` of a peer name as a transport reports it ((host, port, ...), or
    None when unknown)."""
    if isinstance(address, (tuple, list)) and address and isinstance(address[0], str):
        return "ip:" + address[0]
    return "ip:?"


def charged(refusal: Unauthorized) -> bool:
    """Whether `refusal` is charged to the address's failed-authentication budget: yes
    for a forged, malformed, wrong or missing token (or API key); no for `TokenExpired`,
    a token whose signature and claims are good and only ``exp`` has passed. Only the
    secret's holder can make one, and clients send theirs routinely (an SDK back from a
    sleep, many users behind one NAT): it is refused all the same (401, or the
    protocol's code) but must not lock its address out."""
    return not isinstance(refusal, TokenExpired)


def _peer(request: Request) -> str:
    return f"{request.client[0]}:{request.client[1]}" if request.client else "?"


class HttpLimits:
    """The two budgets an `App` charges HTTP requests to (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.requests = ClientLimiter(settings.http_rate_limit, settings.http_rate_burst)
        self.auth_failures = ClientLimiter(settings.auth_failure_limit,
                                           settings.auth_failure_burst)
        # Authorization header -> the client key it was verified as, for headers whose
        # client was refused a 429 lately: the next request with the very same header is
        # refused before its signature is checked again while that client's budget is
        # spent (a flood with one valid token costs a lookup, not a verification).
        self._limited: dict[str, str] = {}
        # Authorization headers lately refused as expired tokens: one never becomes valid
        # again, and expired tokens spend no failed-auth budget (`charged`), so without
        # this a flood with one would cost a signature check per request for ever.
        self._expired: dict[str, None] = {}

    def before_auth(self, request: Request) -> None:
        """Refuse (429) an address whose failed-authentication budget is spent, and a
        header already refused for a client whose budget is still spent."""
        self.check_address(request)
        if self._limited and request.upgrader is None:
            key = self._limited.get(request.headers.get("authorization", ""))
            if key is not None:
                wait = self.requests.wait(key)
                if wait:
                    refusals.warn("http_rate_limit", _peer(request))
                    raise RateLimited(wait)
                del self._limited[request.headers.get("authorization", "")]

    def check_address(self, request: Request) -> None:
        """Refuse (429) an address whose failed-authentication budget is spent (also
        where the token comes later, in a Centrifuge connect command)."""
        wait = self.auth_failures.wait(address_key(request))
        if wait:
            refusals.warn("auth_failures", _peer(request))
            raise RateLimited(wait, "too many failed authentications, retry later")

    def known_expired(self, request: Request) -> None:
        """Refuse (`TokenExpired`, the same 401, unverified) a request whose one
        ``Authorization`` header was refused as an expired token lately."""
        if self._expired:
            values = request.headers.getall("authorization")
            if len(values) == 1 and values[0] in self._expired:
                raise TokenExpired()

    def remember_expired(self, request: Request) -> None:
        """Remember the request's one ``Authorization`` header, just refused as an expired
        token (only where that header is the token verified: not `uni_sse`'s)."""
        values = request.headers.getall("authorization")
        if len(values) == 1:
            if len(self._expired) >= MAX_LIMITED:
                del self._expired[next(iter(self._expired))]
            self._expired[values[0]] = None

    def auth_failed(self, request: Request, refusal: Unauthorized) -> None:
        """Charge `refusal`, a failed authentication, to the peer address unless it is
        not `charged` (the 401 that follows is logged once, by `App._dispatch`)."""
        if charged(refusal):
            self.auth_failures.take(address_key(request))

    def refused(self, request: Request, kind: str) -> None:
        """Log another refusal of `request` (a 403 from its handler)."""
        refusals.warn(kind, _peer(request))

    def charge(self, request: Request) -> None:
        """Spend one request token of the request's client, or refuse with 429."""
        key = client_key(request.principal, request)
        wait = self.requests.take(key)
        if wait:
            header = request.headers.get("authorization")
            if header is not None:
                if len(self._limited) >= MAX_LIMITED:
                    del self._limited[next(iter(self._limited))]
                self._limited[header] = key
            refusals.warn("http_rate_limit", _peer(request))
            raise RateLimited(wait)


class ConnectBudget:
    """The failed-authentication budget of `HttpLimits` as a Centrifuge endpoint's
    `AuthBudget` (protocols/centrifuge/endpoint.py): keyed on the session's peer name
    exactly as HTTP keys a request (`host_key`)."""

    __slots__ = ("_failures",)

    def __init__(self, limits: HttpLimits) -> None:
        self._failures = limits.auth_failures

    def spent(self, address: object) -> bool:
        if self._failures.wait(host_key(address)):
            refusals.warn("auth_failures", address)
            return True
        return False

    def failed(self, address: object, refusal: Unauthorized) -> None:
        if charged(refusal):
            self._failures.take(host_key(address))


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value for a wait of `seconds` (whole seconds, at least 1)."""
    return str(max(1, math.ceil(seconds)))
