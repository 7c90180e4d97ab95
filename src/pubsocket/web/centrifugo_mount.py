"""What a Centrifugo config file mounts (``PUBSOCKET_CENTRIFUGO_CONFIG``; docs/centrifuge.md
"A Centrifugo config file"): Centrifugo's endpoints, over the app's own.

`load_app` (``pubsocket serve``, ``make run``, the ASGI entry) calls `mount_centrifugo`
after the app's route files ran; an `App` built in code gets them by calling it after
its own routes (nothing is mounted behind its back). It mounts, on the app's one hub:

- the Centrifuge endpoint at ``/connection/websocket`` (JSON and Protobuf) with its
  fallbacks ``POST /connection/http_stream``, ``GET /connection/sse``, ``POST /emulation``
  and ``GET /connection/uni_sse``: secured, its tokens verified with the file's
  ``client.token.hmac_secret_key`` (also when ``SECRET``, the app's, differs; without
  it, with ``SECRET``; with neither, a `ConfigError` at load), unless ``client.insecure``
  or ``client.allow_anonymous_connect_without_token`` (then a connection without a
  token is anonymous, as in Centrifugo; only insecure also lifts the permissions);
- Centrifugo's server API at ``POST /api/<method>`` (``X-API-Key``: ``http_api.key``),
  ``POST /api/publish`` still answering pubsocket's own dialect too (web/server_api.py).

The file takes precedence: a route the app mounted at one of these (method, path) is
replaced: one INFO line lists those its `pubsub()`/`uni_sse()` mounted, a WARNING names
each handler of its own code. Every other route of the app (``/ws/chat``, its
pages, its own ``/api/...``) stays and shares the hub, its namespaces and history.
"""

from __future__ import annotations

import logging

from ..auth import Authenticator
from ..errors import ConfigError
from .app import App
from .emulation import EMULATION_PATH, HTTP_STREAM_PATH, SSE_PATH
from .pubsub import pubsub
from .server_api import ROUTED, SERVER_API_PREFIX
from .uni_sse import UNI_SSE_PATH, uni_sse

CENTRIFUGE_PATH = "/connection/websocket"  # where the SDKs connect by default
log = logging.getLogger("pubsocket.app")


def taken_routes() -> list[tuple[str, str]]:
    """The (method, path) pairs a config file's mount takes from the app."""
    return [("GET", CENTRIFUGE_PATH), ("POST", HTTP_STREAM_PATH), ("GET", SSE_PATH),
            ("POST", EMULATION_PATH), ("GET", UNI_SSE_PATH),
            *(("POST", SERVER_API_PREFIX + method) for method in ROUTED)]


def mount_centrifugo(app: App) -> bool:
    """Mount what `app.settings.centrifugo_config` describes (module docstring), replacing
    the app's routes at those paths; False (and nothing done) without a config file."""
    settings = app.settings
    if not settings.centrifugo_config:
        return False
    where = f"PUBSOCKET_CENTRIFUGO_CONFIG ({settings.centrifugo_config})"
    builtin: list[str] = []
    for method, path in taken_routes():
        replaced = app.router.remove(method, path)
        if replaced is None:
            continue
        module = getattr(replaced.handler, "__module__", None) or "?"
        if module.startswith("pubsocket."):  # mounted by the app's pubsub()/uni_sse()
            builtin.append(f"{method} {path}")
        else:  # the app's own code no longer runs there: say which
            log.warning("%s replaces the app's %s %s (%s.%s)", where, method, path, module,
                        getattr(replaced.handler, "__qualname__", "?"))
    if builtin:
        api = [r for r in builtin if r.startswith("POST " + SERVER_API_PREFIX)]
        named = [r for r in builtin if r not in api]
        if api:
            named.append(f"POST {SERVER_API_PREFIX}<method> ({len(api)} routes)")
        log.info("%s replaces what the app's pubsub() mounted at %s", where,
                 ", ".join(named))
    secret = settings.centrifugo_secret
    auth = (app.auth if not secret or secret == settings.secret
            else Authenticator(settings.api_key, secret))
    secured = not (settings.centrifugo_insecure or settings.centrifugo_anonymous)
    if secured and not (secret or settings.secret):  # no token could ever verify
        raise ConfigError(f"{where}: set client.token.hmac_secret_key (or client.insecure: "
                          f"true): the Centrifuge endpoint verifies tokens with it")
    # The app's /api/history, /api/presence, /metrics and /pubsocket.js are not
    # Centrifugo's: kept when the app has them (pubsub() mounts them only if missing).
    pubsub(CENTRIFUGE_PATH, app=app, protocol="centrifuge", secured=secured,
           authenticator=auth)
    uni_sse(UNI_SSE_PATH, app=app, secured=secured, authenticator=auth)
    if settings.centrifugo_insecure:
        log.warning("%s: client.insecure: anyone may connect to %s without a token and "
                    "every action on a known channel is allowed", where, CENTRIFUGE_PATH)
    return True
