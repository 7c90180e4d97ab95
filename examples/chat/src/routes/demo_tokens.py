"""DEMO ONLY: ``POST /demo/token {"nick": "..."}`` mints a token for anyone who asks.

!!! Anyone who can reach this route gets a valid token. It exists so that `make run`
!!! shows a working chat without a login system. A real app mints tokens after its own
!!! login (the same `app.auth.issue(...)` call, with the user's real id as `sub`).
!!! Turn it off by setting DEMO_TOKENS = False below, or by deleting this file.

The token is short-lived (10 minutes; the page's client refreshes it on the server's
`expiring` notice), says who the user is (``sub`` "nick#tag", ``info`` {"name": nick}),
and its ``topics`` claim limits it to the chat's rooms, ``room:*``.
"""

import base64
import hashlib
import hmac
import re
import secrets

from pubsocket import noauth, post
from pubsocket.errors import HTTPError

DEMO_TOKENS = True  # DEMO ONLY: False removes the route (the page then says so)
TOKEN_TTL = 600  # seconds
ROOMS = ["room:*"]
_NICK = re.compile(r"[^\W_][\w .'-]{0,23}")  # 1-24 characters, starts with a letter/digit
_SESSION = re.compile(r"[0-9a-f]{8,32}")


def session_tag(secret: str, session: str) -> str:
    """The ``sub`` suffix for `session`: 12 base64url characters of HMAC-SHA256(secret).

    Every ``sub`` is visible to the room (presence, ``from.user``); were the suffix the
    session itself, anyone could mint a token with someone else's exact ``sub``. Derived
    here, the same session keeps its ``sub`` while no one can produce another's.
    """
    digest = hmac.new(secret.encode(), b"demo-sub:" + session.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode()[:12]


if DEMO_TOKENS:

    @noauth()
    @post("/demo/token")
    async def demo_token(request, response):
        """``{"nick": str, "session"?: hex}`` -> ``{"token": JWT, "sub": str}``.

        `session` (a random id the page keeps per tab) makes the same tab get the same
        ``sub`` on every call, which a token refresh requires (docs/protocol.md "Live
        tokens"); without it a new one is drawn. The ``sub`` carries a tag derived from
        the session with the app's SECRET (`session_tag`), never the session itself.
        """
        body = request.body
        nick = body.get("nick") if isinstance(body, dict) else None
        if not isinstance(nick, str) or not _NICK.fullmatch(nick.strip()):
            raise HTTPError(400, "bad_nick", "nick must be 1-24 letters, digits, spaces or .'-_")
        session = body.get("session")
        if not isinstance(session, str) or not _SESSION.fullmatch(session):
            session = secrets.token_hex(4)
        nick = nick.strip()
        sub = f"{nick}#{session_tag(request.app.settings.secret or '', session)}"
        claims = {"info": {"name": nick},
                  "topics": {"subscribe": ROOMS, "publish": ROOMS,
                             "presence": ROOMS, "history": ROOMS}}
        token = request.app.auth.issue(sub=sub, ttl=TOKEN_TTL, claims=claims)
        return response({"token": token, "sub": sub})
