"""The ``pubsocket`` command: serve | token | init | env | sub | pub | presence | outbox.

Every command that needs settings takes a project folder (``serve APP_DIR``,
``token --app APP_DIR``, ``env --app APP_DIR``) and reads ``APP_DIR/.env``, then the
current directory's ``.env``; the environment wins over both (`Settings.from_env`).
The client commands (``sub``, ``pub``, ``presence``: `pubsocket.client.commands`) take
``--token``, by default the ``API_KEY`` of the environment or the current ``.env``.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from .auth import Authenticator
from .client import commands as client_commands
from .config import Settings
from .errors import ConfigError, ListenError
from .log import configure_logging
from .outbox import cli as outbox_cli
from .scaffold import write_project
from .web.project import env_files_for
from .web.routing import PROTOCOL_ATTR

if TYPE_CHECKING:
    from .web import App


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="pubsocket", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a project folder")
    serve.add_argument("app_dir", nargs="?", default=".")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_port)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--certfile", help="TLS certificate chain (PEM): serve https/wss")
    serve.add_argument("--keyfile", help="TLS private key (PEM) for --certfile")
    token = sub.add_parser("token", help="print a signed token (needs SECRET)")
    token.add_argument("--app", default=".", help="project folder whose .env to read")
    token.add_argument("--sub")
    token.add_argument("--ttl", type=float, default=3600)
    token.add_argument("--claims", help="extra claims as a JSON object")
    init = sub.add_parser("init", help="scaffold a project folder (with a .env of secrets)")
    init.add_argument("dir")
    env = sub.add_parser("env", help="write API_KEY and SECRET to a .env file if missing")
    env.add_argument("--app", default=".", help="project folder (default file: APP/.env)")
    env.add_argument("--file", help="the .env file to write (default: APP/.env)")
    client_commands.add_parsers(sub)
    outbox_cli.add_parser(sub)  # outbox init | relay (pubsocket.outbox.cli)
    args = parser.parse_args(argv)
    try:
        if args.command == "outbox":
            return outbox_cli.run(args, Settings.from_env(env_files=env_files_for(args.app)))
        if args.command in client_commands.COMMANDS:
            return client_commands.run(args, lambda: Settings.from_env().api_key)
        if args.command == "serve":
            return _serve(args)
        if args.command == "token":
            return _token(args)
        if args.command == "init":
            return _init(Path(args.dir))
        return _env(Path(args.file) if args.file else Path(args.app) / ".env")
    except ConfigError as exc:
        print(f"pubsocket: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:  # one line naming the port, not a traceback
        print(f"pubsocket: {exc}", file=sys.stderr)
        return 1


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535")
    return port


def _serve(args: argparse.Namespace) -> int:
    from .server import run
    from .server.tls import server_context
    from .web import load_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("workers", args.workers), ("certfile", args.certfile),
                                   ("keyfile", args.keyfile)) if v is not None}
    app_dir = Path(args.app_dir)
    settings = Settings.from_env(env_files=env_files_for(app_dir), **overrides)
    configure_logging(settings.log_level)
    app = load_app(app_dir, settings)
    app.check()  # fail fast, before forking or binding
    server_context(settings)  # a missing or unreadable certificate too
    # The checked app is the one served: loading runs the route files' module code and
    # logs what the config file mounts, so a second load would say everything twice.
    loaded = [app]

    def make_app() -> App:
        """The app loaded above, then (a further worker's) a fresh load."""
        return loaded.pop() if loaded else load_app(app_dir, settings)

    def ready(server: object) -> None:
        port = getattr(server, "port", settings.port)
        tls = getattr(server, "scheme", "http") == "https"
        print(_connect_help(settings, port, _pages(app), tls=tls,
                            websockets=_hubs(app, "plain")), flush=True)

    run(make_app, settings.host, settings.port, workers=settings.workers, ready=ready)
    return 0


def _pages(app: App) -> list[tuple[str, str]]:
    """(label, path) of what a person can open: the app's page, the ops page, the
    Centrifuge endpoint, when the app has them."""
    found = []
    if app.public_dir is not None and (app.public_dir / "index.html").is_file():
        found.append(("Open:", "/"))
    if app.router.match("GET", "/admin") is not None:
        found.append(("Ops page:", "/admin"))
    found += [("Centrifuge:", path) for path in _hubs(app, "centrifuge")]
    if app.settings.centrifugo_config:  # mounted by the file (web/centrifugo_mount.py)
        found.append(("Server API:", "/api/<method>"))
    return found


def _hubs(app: App, protocol: str) -> list[str]:
    """The paths of the app's hub WebSocket endpoints speaking `protocol`, as `pubsub()`
    marked them (web/routing.py `PROTOCOL_ATTR`)."""
    return [route.path for route in app.router if route.method == "GET"
            and getattr(route.handler, PROTOCOL_ATTR, None) == protocol]


def _connect_help(settings: Settings, port: int,
                  pages: Sequence[tuple[str, str]] = (), tls: bool = False,
                  websockets: Sequence[str] = ()) -> str:
    """The banner: where the server listens, `pages` ((label, path); Centrifuge paths
    are WebSocket URLs) and, with a token to show, the `websockets` (plain hub
    endpoint paths) with a command to try the first; none when the app has none."""
    http, ws = ("https", "wss") if tls else ("http", "ws")
    base = f"{settings.host}:{port}"
    lines = [f"pubsocket serving on {http}://{base}"]
    for label, path in pages:
        scheme = ws if label == "Centrifuge:" else http
        lines.append(f"  {label:<10} {scheme}://{base}{path}")
    if settings.centrifugo_config:
        tokens = ("anonymous allowed (client.insecure)" if settings.centrifugo_insecure
                  else "tokens signed with its client.token.hmac_secret_key")
        if settings.centrifugo_anonymous and not settings.centrifugo_insecure:
            tokens += ", or none (allow_anonymous_connect_without_token)"
        lines.append(f"  Config:    {settings.centrifugo_config} serves /connection/websocket "
                     f"and /api/<method> over the app's own; {tokens}")
    token = None
    if settings.secret:
        token = Authenticator(settings.api_key, settings.secret).issue(sub="cli", ttl=24 * 3600)
    elif settings.api_key:
        token = settings.api_key
    if token:
        urls = [f"{ws}://{base}{path}" for path in websockets]
        lines += [f"  WebSocket: {url}" for url in urls]
        lines.append(f"  Token:     {token}")
        if urls:
            lines.append(f"  Try:       websocat -H='Authorization: Bearer {token}' {urls[0]}")
    return "\n".join(lines)


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env(env_files=env_files_for(args.app))
    if not settings.secret:
        env = Path(args.app) / ".env"
        raise ConfigError(f"SECRET is not set: set it in {env} or run "
                          f"`pubsocket env --file {env}`")
    try:
        claims = orjson.loads(args.claims) if args.claims else None
    except orjson.JSONDecodeError:
        raise ConfigError("--claims must be a JSON object") from None
    if claims is not None and not isinstance(claims, dict):
        raise ConfigError("--claims must be a JSON object")
    print(Authenticator(settings.api_key, settings.secret).issue(args.sub, args.ttl, claims))
    return 0


def _init(root: Path) -> int:
    write_project(root)  # a secured hub, and a .gitignore that keeps .env out
    _env(root / ".env")  # random API_KEY and SECRET, so `serve` works from anywhere
    print(f"created {root}; run: {_self_command()} serve {root}")
    return 0


def _self_command() -> str:
    """How the user runs this command again from here: ``pubsocket`` when PATH finds
    this installation's, else its path in the venv (``.venv/bin/pubsocket``)."""
    beside = Path(sys.executable).parent / "pubsocket"
    found = shutil.which("pubsocket")
    if found and beside.is_file() and Path(found).resolve() == beside.resolve():
        return "pubsocket"
    if not beside.is_file():
        return f"{sys.executable} -m pubsocket"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


def _env(path: Path) -> int:
    """Add a random API_KEY and SECRET to `path` where missing (file mode 0600)."""
    text = path.read_text() if path.exists() else ""
    names = {line.split("=", 1)[0].strip().removeprefix("export ").strip()
             for line in text.splitlines() if "=" in line}
    added = [f"{name}={secrets.token_urlsafe(32)}" for name in ("API_KEY", "SECRET")
             if name not in names]
    if added:
        sep = "" if not text or text.endswith("\n") else "\n"
        path.write_text(text + sep + "\n".join(added) + "\n")
        path.chmod(0o600)  # secrets
        print(f"wrote {', '.join(a.split('=')[0] for a in added)} to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
