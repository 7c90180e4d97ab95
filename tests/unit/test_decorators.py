"""Module-level decorators bound to the current app, and `load_app` on project folders."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import pubsocket
from pubsocket import App, ConfigError, Settings, load_app
from pubsocket.brokers import MemoryBroker
from pubsocket.web import Headers, Request, current_app, using_app
from pubsocket.web.server_api import ROUTED


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)


def paths(app: App) -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in app.router}


async def call(app: App, method: str, target: str) -> Any:
    response = await app.handle(Request(method, target, Headers()))
    assert response is not None
    return response


def test_using_app_routes_module_level_decorators_to_that_app() -> None:
    app, other = App(), App()
    with using_app(app) as current:
        assert current is app
        assert current_app() is app

        @pubsocket.get("/g")
        async def g(request: Any, response: Any) -> None: ...

        @pubsocket.post("/p")
        async def p(request: Any, response: Any) -> None: ...

        @pubsocket.put("/u")
        async def u(request: Any, response: Any) -> None: ...

        @pubsocket.patch("/a")
        async def a(request: Any, response: Any) -> None: ...

        @pubsocket.delete("/d")
        async def d(request: Any, response: Any) -> None: ...

        pubsocket.pubsub("/ws/chat")

    assert paths(app) >= {("GET", "/g"), ("POST", "/p"), ("PUT", "/u"), ("PATCH", "/a"),
                          ("DELETE", "/d"), ("GET", "/ws/chat"), ("POST", "/api/publish")}
    assert paths(other) == set()


def test_using_app_nests_and_restores() -> None:
    outer, inner = App(), App()
    with using_app(outer):
        with using_app(inner):
            assert current_app() is inner
        assert current_app() is outer

        @pubsocket.get("/after-inner")
        async def h(request: Any, response: Any) -> None: ...

    assert paths(outer) == {("GET", "/after-inner")}
    assert paths(inner) == set()


def test_using_app_restores_after_an_exception() -> None:
    outer, inner = App(), App()
    with using_app(outer):
        with pytest.raises(RuntimeError), using_app(inner):
            raise RuntimeError("boom")
        assert current_app() is outer


def test_module_level_auth_markers() -> None:
    app = App()
    with using_app(app):

        @pubsocket.secured()
        @pubsocket.get("/s")
        async def s(request: Any, response: Any) -> None: ...

        @pubsocket.post("/n")
        @pubsocket.noauth()
        async def n(request: Any, response: Any) -> None: ...

    needs = {r.path: r.requires_auth() for r in app.router}
    assert needs == {"/s": True, "/n": False}


# -- load_app -------------------------------------------------------------------------------

ROUTES = '''
from pubsocket import get, post, noauth, pubsub

loads = []  # module state: one list per load


@get("/hello/{name}")
async def hello(request, response):
    loads.append(request.params["name"])
    return response({"hello": request.params["name"], "seen": len(loads)})


@noauth()
@post("/echo")
async def echo(request, response):
    return response(request.body)


pubsub("/ws/chat")
'''

MORE_ROUTES = '''
from pubsocket import get


@get("/nested")
async def nested(request, response):
    return response("nested")
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    routes = tmp_path / "proj" / "src" / "routes"
    (routes / "sub").mkdir(parents=True)
    (routes / "app.py").write_text(ROUTES)
    (routes / "sub" / "more.py").write_text(MORE_ROUTES)
    (tmp_path / "proj" / "src" / "public").mkdir()
    (tmp_path / "proj" / "src" / "public" / "index.html").write_text("home")
    return tmp_path / "proj"


async def test_load_app_registers_every_route_file(project: Path) -> None:
    app = load_app(project, Settings())
    assert paths(app) >= {("GET", "/hello/{name}"), ("POST", "/echo"), ("GET", "/ws/chat"),
                          ("POST", "/api/publish"), ("GET", "/api/history"),
                          ("GET", "/nested")}
    assert {p for _, p in paths(app) if p.removeprefix("/api/") not in ROUTED} <= {
        "/hello/{name}", "/echo", "/ws/chat", "/api/publish", "/api/history",
        "/api/presence", "/nested", "/metrics", "/pubsocket.js"}
    assert app.public_dir == project / "src" / "public"
    r = await call(app, "GET", "/hello/ann")
    assert r.status == 200
    assert r.body == b'{"hello":"ann","seen":1}'
    assert (await call(app, "GET", "/")).body == b"home"


async def test_two_apps_from_one_folder_are_independent(project: Path) -> None:
    one = load_app(project, Settings())
    two = load_app(project, Settings())
    assert paths(one) == paths(two)
    handlers_one = {r.handler for r in one.router}
    handlers_two = {r.handler for r in two.router}
    assert handlers_one.isdisjoint(handlers_two)

    # module state is per load
    await call(one, "GET", "/hello/a")
    await call(one, "GET", "/hello/b")
    r = await call(two, "GET", "/hello/c")
    assert r.body == b'{"hello":"c","seen":1}'

    # hubs are separate
    assert one.hub is not two.hub
    await one.hub.start()
    await two.hub.start()
    try:
        a, b = Recorder(), Recorder()
        await one.hub.subscribe(a, "t")
        await two.hub.subscribe(b, "t")
        await one.hub.publish("t", 1)
        assert len(a.frames) == 1
        assert b.frames == []
        assert two.hub.stats.published == 0
    finally:
        await one.hub.close()
        await two.hub.close()

    # a route added to one app later does not appear in the other
    @one.get("/only-one")
    async def only(request: Any, response: Any) -> None: ...

    assert ("GET", "/only-one") not in paths(two)


def test_load_app_does_not_leak_into_the_default_app(project: Path) -> None:
    sentinel = App()
    with using_app(sentinel):
        load_app(project, Settings())
        assert current_app() is sentinel
    assert paths(sentinel) == set()


def test_load_app_uses_the_given_settings(project: Path) -> None:
    settings = Settings(max_subscriptions=3)
    app = load_app(project, settings)
    assert app.settings is settings
    assert app.hub.settings is settings


def test_load_app_without_public_folder(tmp_path: Path) -> None:
    (tmp_path / "src" / "routes").mkdir(parents=True)
    app = load_app(tmp_path, Settings())
    assert app.public_dir is None
    assert paths(app) == set()


def test_load_app_without_routes_folder_raises_config_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(ConfigError, match="routes"):
        load_app(tmp_path, Settings())
    with pytest.raises(ConfigError):
        load_app(tmp_path / "missing", Settings())


def test_load_app_route_file_with_a_dataclass(tmp_path: Path) -> None:
    # ordinary module code must work in route files, e.g. a dataclass with postponed
    # annotations (dataclasses looks the module up in sys.modules)
    routes = tmp_path / "src" / "routes"
    routes.mkdir(parents=True)
    (routes / "models.py").write_text(textwrap.dedent('''
        from __future__ import annotations

        from dataclasses import dataclass

        from pubsocket import get


        @dataclass
        class Item:
            name: str


        @get("/item")
        async def item(request, response):
            return response({"name": Item("a").name})
    '''))
    app = load_app(tmp_path, Settings())
    assert paths(app) == {("GET", "/item")}


async def test_app_hub_uses_settings_broker() -> None:
    app = App(Settings())
    await app.hub.start()
    try:
        assert isinstance(app.hub.broker, MemoryBroker)
    finally:
        await app.hub.close()


def test_secured_centrifuge_endpoint_needs_secrets_to_start_but_no_token_to_upgrade() -> None:
    # The Centrifuge SDKs authenticate in the connect command: the upgrade is open, yet
    # an app that could never verify a token must refuse to start, like @secured().
    app = App(Settings())
    pubsocket.pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    route = app.router.match("GET", "/connection/websocket")
    assert route is not None and not route[0].requires_auth()
    with pytest.raises(ConfigError, match="/connection/websocket"):
        app.check()
    open_app = App(Settings())
    pubsocket.pubsub("/connection/websocket", app=open_app, protocol="centrifuge")
    open_app.check()
