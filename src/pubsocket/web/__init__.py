"""Routing, requests and responses, the WebSocket API and the built-in pub/sub endpoint."""

from .admin import admin
from .app import App
from .centrifugo_mount import mount_centrifugo
from .decorators import current_app, delete, get, noauth, patch, post, put, secured, using_app
from .project import load_app
from .pubsub import pubsub
from .request import Headers, Request
from .response import Response, ResponseFactory
from .routing import Router
from .uni_sse import uni_sse
from .websocket import Connection, Upgrader, Websocket

__all__ = [
    "App", "Connection", "Headers", "Request", "Response", "ResponseFactory", "Router",
    "Upgrader", "Websocket", "admin", "current_app", "delete", "get", "load_app",
    "mount_centrifugo", "noauth", "patch", "post", "pubsub", "put", "secured", "uni_sse",
    "using_app",
]
