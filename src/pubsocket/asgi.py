"""ASGI entry points: ``PUBSOCKET_APP=myapp uvicorn --factory pubsocket.asgi:from_env``.

`from_env` serves the project folder named by ``PUBSOCKET_APP`` (default: the current
directory) with settings from the environment over ``APP/.env`` then ``./.env``;
`ASGIApp.from_folder(path)` does the same from code.
"""

from .server.asgi import ASGIApp, from_env

__all__ = ["ASGIApp", "from_env"]
