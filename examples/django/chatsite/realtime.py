"""pubsocket for this site: the hub at /rt/ws/chat, where Django's session cookie is the
credential (no token to mint or refresh). The ops page is at /rt/admin (API_KEY).

`django_session` is the connection hook: pubsocket hands it the upgrade request and
runs it only after the request's Origin proved to be this site (a cookie-authenticated
upgrade from another site is refused with 403: cross-site WebSocket hijacking). It
looks the session up the way Django's AuthenticationMiddleware does, including the
session hash check, so logging out or changing the password also closes the door
to new sockets; `close_sockets_on_logout` closes the ones already open (4003).
"""

from types import SimpleNamespace
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.base import SessionBase
from django.utils.module_loading import import_string

from pubsocket import App, ASGIApp, Request, Settings, admin, pubsub

ROOMS = ["room:*", "news"]


async def django_session(request: Request) -> dict[str, Any] | None:
    """The signed-in Django user of the upgrade's session cookie as claims, or None
    (401). The claims say who it is (``sub``: the user's primary key, shown with
    ``info`` to the room) and what the connection may do."""
    key = request.cookies.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    store: type[SessionBase] = import_string(settings.SESSION_ENGINE + ".SessionStore")
    user = await aget_user(SimpleNamespace(session=store(session_key=key)))
    if not user.is_authenticated or not user.is_active:
        return None
    return {"sub": str(user.pk), "info": {"name": user.get_username()},
            "topics": {"subscribe": ROOMS, "publish": ["room:*"],
                       "history": ROOMS, "presence": ROOMS}}


realtime = App(Settings.from_env())
pubsub("/ws/chat", app=realtime, authenticate=django_session, presence=["room:*"])
admin("/admin", app=realtime)
rt = ASGIApp(realtime)


def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Django's logout signal (sent from a sync view, in a worker thread): close the
    user's open sockets on every node; the hook already refuses new ones."""
    if user is not None:
        async_to_sync(realtime.hub.disconnect_user)(str(user.pk), "signed out")


user_logged_out.connect(close_sockets_on_logout)
