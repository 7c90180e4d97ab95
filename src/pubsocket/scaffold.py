"""What `pubsocket init DIR` writes: a project that is safe to run and to commit.

* ``src/routes/app.py``: one HTTP route, ``async def`` like every handler.
* ``src/routes/hub.py``: the hub, **secured** (a token is required to connect); a
  guide that changes the hub replaces this one file, so guides compose with ``init``.
* ``src/public/index.html``: a page, so ``/`` answers.
* ``.env``: random ``API_KEY`` and ``SECRET`` (mode 0600), and ``.gitignore`` listing
  ``.env`` so the secrets stay out of version control.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

APP_ROUTES = '''"""Routes: every file under src/routes is loaded by `pubsocket serve`."""

from pubsocket import Debug, get


@get("/hello/{name}")
async def hello(request, response):  # handlers are `async def`
    Debug.info("hello", request.params["name"])
    return response({"hello": request.params["name"]})
'''

HUB_ROUTES = '''"""The built-in pub/sub hub. Connecting needs a token: the API_KEY, or a JWT from
`pubsocket token --app . --sub alice --claims '{"topics": {"subscribe": ["room:*"],
"publish": ["room:*"]}}'` (its `topics` claim limits what it may do). Drop
`secured=True` only for a hub anyone may use without one."""

from pubsocket import pubsub

pubsub("/ws/chat", secured=True)
'''

INDEX = "<!doctype html><title>pubsocket</title><p>It works.\n"

GITIGNORE = """# secrets: API_KEY and SECRET live here (pubsocket init / pubsocket env)
.env
__pycache__/
"""


def write_project(root: Path) -> None:
    """Write the project files under `root` (the `.env` is the caller's: `cli._env`).
    Raises `ConfigError` when `root/src/routes` already exists."""
    routes = root / "src" / "routes"
    public = root / "src" / "public"
    if routes.exists():
        raise ConfigError(f"{routes} already exists")
    routes.mkdir(parents=True)
    public.mkdir(parents=True, exist_ok=True)
    (routes / "app.py").write_text(APP_ROUTES)
    (routes / "hub.py").write_text(HUB_ROUTES)
    if not (public / "index.html").exists():
        (public / "index.html").write_text(INDEX)
    ignore = root / ".gitignore"
    text = ignore.read_text() if ignore.exists() else ""
    if ".env" not in text.split():
        sep = "" if not text or text.endswith("\n") else "\n"
        ignore.write_text(text + sep + GITIGNORE)
