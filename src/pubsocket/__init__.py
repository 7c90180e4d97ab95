"""pubsocket: realtime WebSocket pub/sub for Python (tina4's API, a fast hub, Redis scale-out)."""

from .auth import Principal
from .config import Settings
from .errors import (
    BrokerUnavailable,
    CloseCode,
    ConfigError,
    ConnectionClosed,
    HTTPError,
    PubsocketError,
    Unauthorized,
)
from .hub import Hub
from .log import Debug
from .publisher import AsyncPublisher, Publisher
from .server import ASGIApp, Server
from .web import (
    App,
    Request,
    Response,
    Router,
    Websocket,
    admin,
    delete,
    get,
    load_app,
    noauth,
    patch,
    post,
    pubsub,
    put,
    secured,
)

__all__ = [
    "ASGIApp", "App", "AsyncPublisher", "BrokerUnavailable", "CloseCode", "ConfigError",
    "ConnectionClosed", "Debug", "HTTPError", "Hub", "Principal", "Publisher", "PubsocketError",
    "Request", "Response", "Router", "Server",
    "Settings", "Unauthorized", "Websocket", "admin", "delete", "get", "load_app", "noauth",
    "patch", "post", "pubsub", "put", "secured",
]
