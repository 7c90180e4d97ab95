"""DEMO ONLY: ``POST /demo/token {"nick": "..."}`` mints a token for anyone who asks.

!!! Anyone who can reach this route gets a valid token. It exists so that `make run`
!!! shows a working chat without a login system. A real app mints tokens after its own
!!! login (the same `app.auth.issue(...)` call, with the user's real id as `sub`).
!!! Turn it off by setting DEMO_TOKENS = False below, or by deleting this file.

The token is short-lived (10 minutes; the page's client refreshes it on the server's
`expiring` notice), says who the user is (``sub`` "nick#tag", ``info`` {"name": nick}),
and its ``topics`` claim limits it to the chat's rooms, ``room:*``.

Bounded (issue 15): each address may ask for `PER_ADDRESS_BURST` tokens at once, then
one per `PER_ADDRESS_EVERY` seconds (429 with Retry-After); and a nickname is held by
the session that got it for the token's lifetime: another session asking for it, or for
a look-alike (same letters after NFKC + casefold, or Unicode confusables such as a
Cyrillic "a" (U+0430) for a Latin "a", or "I" for "l"), gets 409 ``nick_taken``.
"""

import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
import unicodedata

from confusable_homoglyphs import confusables

from pubsocket import noauth, post
from pubsocket.errors import HTTPError, RateLimited
from pubsocket.web.limits import ClientLimiter, address_key

DEMO_TOKENS = True  # DEMO ONLY: False removes the route (the page then says so)
TOKEN_TTL = 600  # seconds
ROOMS = ["room:*"]
_NICK = re.compile(r"[^\W_][\w .'-]{0,23}")  # 1-24 characters, starts with a letter/digit
_SESSION = re.compile(r"[0-9a-f]{8,32}")
PER_ADDRESS_BURST = 10  # tokens an address may get at once...
PER_ADDRESS_EVERY = 6.0  # ...then one per this many seconds
MAX_NICKS = 10_000  # nicknames held at once (the per-address limit keeps it far off)
_BIDI_MARKS = "\u200e\u200f"


def _alike(char: str) -> set[str]:
    found = confusables.is_confusable(char, greedy=True)
    glyphs = {h["c"].strip(_BIDI_MARKS) for h in found[0]["homoglyphs"]} if found else set()
    return {c for c in glyphs if len(c) == 1}


@functools.lru_cache(maxsize=4096)
def _glyph(char: str, cased: bool) -> str:
    """One representative of what `char` (already case-folded) looks like: the smallest
    character confusable with it (and with its upper case when `cased`), transitively
    and bounded, so "l", "I", "1" and Cyrillic "i" (U+0456) meet at one."""
    upper = char.upper()
    seen = {char, upper} if cased and len(upper) == 1 else {char}
    todo = list(seen)
    while todo and len(seen) < 256:
        for other in _alike(todo.pop()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return min(seen)


def nick_keys(nick: str) -> tuple[str, str]:
    """What two nicknames share when they look alike: NFKC, casefold, then every
    character replaced by its confusable representative, once through upper case too
    ("Il" vs "ll") and once not (Greek nu looks like "v", its capital like "N")."""
    text = unicodedata.normalize("NFKC", nick).casefold()
    return ("".join(_glyph(c, True) for c in text), "".join(_glyph(c, False) for c in text))


class NickRegistry:
    """Nickname keys (`nick_keys`) held by a session tag until an expiry (the token's
    lifetime). Bounded: `limit` nicknames at once."""

    def __init__(self, limit: int = MAX_NICKS) -> None:
        self.limit = limit
        self._held: dict[str, tuple[str, float]] = {}

    def claim(self, nick: str, holder: str, ttl: float) -> None:
        """Hold `nick` for `holder` for `ttl` seconds, or raise 409 when another holder
        has it or a look-alike (503 when the registry is full of live holds)."""
        keys, now = nick_keys(nick), time.monotonic()
        for key in keys:
            current = self._held.get(key)
            if current is not None and current[0] != holder and current[1] > now:
                raise HTTPError(409, "nick_taken", "that nickname, or one that looks like "
                                "it, is in use: pick another")
        if len(self._held) + len(keys) > 2 * self.limit:
            self._held = {k: v for k, v in self._held.items() if v[1] > now}
            if len(self._held) + len(keys) > 2 * self.limit:
                raise HTTPError(503, "too_many_nicks", "too many people are here, retry later")
        for key in keys:
            self._held[key] = (holder, now + ttl)


def session_tag(secret: str, session: str) -> str:
    """The ``sub`` suffix for `session`: 12 base64url characters of HMAC-SHA256(secret).

    Every ``sub`` is visible to the room (presence, ``from.user``); were the suffix the
    session itself, anyone could mint a token with someone else's exact ``sub``. Derived
    here, the same session keeps its ``sub`` while no one can produce another's.
    """
    digest = hmac.new(secret.encode(), b"demo-sub:" + session.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode()[:12]


if DEMO_TOKENS:
    _per_address = ClientLimiter(1 / PER_ADDRESS_EVERY, PER_ADDRESS_BURST)
    _nicks = NickRegistry()

    @noauth()
    @post("/demo/token")
    async def demo_token(request, response):
        """``{"nick": str, "session"?: hex}`` -> ``{"token": JWT, "sub": str}``.

        `session` (a random id the page keeps per tab) makes the same tab get the same
        ``sub`` on every call, which a token refresh requires (docs/protocol.md "Live
        tokens"); without it a new one is drawn. The ``sub`` carries a tag derived from
        the session with the app's SECRET (`session_tag`), never the session itself.
        429 past the per-address limit; 409 ``nick_taken`` when another session holds
        the nickname or a look-alike (module docstring).
        """
        wait = _per_address.take(address_key(request))
        if wait:
            raise RateLimited(wait, "too many tokens asked from this address, retry later")
        body = request.body
        nick = body.get("nick") if isinstance(body, dict) else None
        if not isinstance(nick, str) or not _NICK.fullmatch(nick.strip()):
            raise HTTPError(400, "bad_nick", "nick must be 1-24 letters, digits, spaces or .'-_")
        session = body.get("session")
        if not isinstance(session, str) or not _SESSION.fullmatch(session):
            session = secrets.token_hex(4)
        nick = nick.strip()
        tag = session_tag(request.app.settings.secret or "", session)
        _nicks.claim(nick, tag, TOKEN_TTL)
        sub = f"{nick}#{tag}"
        claims = {"info": {"name": nick},
                  "topics": {"subscribe": ROOMS, "publish": ROOMS,
                             "presence": ROOMS, "history": ROOMS}}
        token = request.app.auth.issue(sub=sub, ttl=TOKEN_TTL, claims=claims)
        return response({"token": token, "sub": sub})
