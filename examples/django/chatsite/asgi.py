"""The site's ASGI application: Django for every path, pubsocket below /rt.

    DJANGO_SECRET_KEY=... API_KEY=... uvicorn chatsite.asgi:application --app-dir examples/django

Django's ASGI handler serves HTTP only (no WebSocket, no lifespan), so this router sends
the lifespan events to pubsocket (its startup connects the broker, its shutdown closes
it) and every request below PREFIX to pubsocket, with ``root_path`` set as ASGI mounts
do (pubsocket then matches the path below it and its pages link below it).
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_app = get_asgi_application()  # sets Django up: import the site's modules after

from .realtime import rt  # noqa: E402

PREFIX = "/rt"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await rt(scope, receive, send)
        return
    path: str = scope["path"]
    if path == PREFIX or path.startswith(PREFIX + "/"):
        await rt({**scope, "root_path": scope.get("root_path", "") + PREFIX}, receive, send)
    elif scope["type"] == "http":
        await django_app(scope, receive, send)
    else:  # a WebSocket outside /rt: nothing serves it
        await send({"type": "websocket.close", "code": 1008})
