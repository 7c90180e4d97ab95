"""Loading a project folder: ``APP_DIR/src/routes/**/*.py`` and ``APP_DIR/src/public``."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .app import App
from .centrifugo_mount import mount_centrifugo
from .decorators import using_app

_counter = itertools.count()


def env_files_for(app_dir: str | Path) -> tuple[Path, ...]:
    """The `.env` files for a project folder, first wins: ``app_dir/.env``, then the
    current directory's (once, when they are the same file)."""
    own, here = Path(app_dir) / ".env", Path(".env")
    if own.resolve() == here.resolve():
        return (here,)
    return (own, here)


def load_app(app_dir: str | Path, settings: Settings) -> App:
    """A new `App` with every route file of `app_dir` executed against it, in path order.

    Each load runs the files afresh under a unique module name, so two apps loaded from
    the same folder are independent. Then, with ``PUBSOCKET_CENTRIFUGO_CONFIG`` set, the
    file's endpoints are mounted over the app's own (web/centrifugo_mount.py).
    """
    root = Path(app_dir)
    routes = root / "src" / "routes"
    if not routes.is_dir():
        raise ConfigError(f"{routes} does not exist (run `pubsocket init {root}`)")
    public = root / "src" / "public"
    app = App(settings, public_dir=public if public.is_dir() else None)
    app.root = root  # for startup advice that names this folder
    run_id = next(_counter)
    with using_app(app):
        for index, file in enumerate(sorted(routes.rglob("*.py"))):
            name = f"_pubsocket_routes_{run_id}_{index}_{file.stem}"
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise ConfigError(f"cannot load {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    mount_centrifugo(app)
    return app
