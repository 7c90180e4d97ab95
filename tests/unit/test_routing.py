"""`Router` matching and tina4's auth rules for routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pubsocket import App, noauth, secured
from pubsocket.errors import HTTPError
from pubsocket.web.routing import Handler, Router

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def handler() -> Handler:
    """A fresh handler function each call (auth markers live on the function)."""

    async def h(request: Any, response: Any) -> Any:
        return None

    return h


def test_static_route_matches_exactly() -> None:
    router = Router()
    h = handler()
    router.add("GET", "/users", h)
    match = router.match("GET", "/users")
    assert match is not None
    assert match[0].handler is h
    assert match[1] == {}
    assert router.match("GET", "/users/1") is None
    assert router.match("GET", "/user") is None
    assert router.match("POST", "/users") is None


def test_method_is_case_insensitive_at_registration() -> None:
    router = Router()
    router.add("get", "/a", handler())
    assert router.match("GET", "/a") is not None


def test_param_route_captures_one_segment() -> None:
    router = Router()
    h = handler()
    router.add("GET", "/users/{id}/posts/{post_id}", h)
    match = router.match("GET", "/users/42/posts/abc-1")
    assert match is not None
    assert match[0].handler is h
    assert match[1] == {"id": "42", "post_id": "abc-1"}
    assert router.match("GET", "/users/42/posts") is None
    assert router.match("GET", "/users/a/b/posts/1") is None
    assert router.match("GET", "/users//posts/1") is None


def test_param_route_escapes_literal_parts() -> None:
    router = Router()
    router.add("GET", "/files/{name}.json", handler())
    match = router.match("GET", "/files/report.json")
    assert match is not None
    assert match[1] == {"name": "report"}
    assert router.match("GET", "/files/reportXjson") is None


def test_static_route_wins_over_param_route() -> None:
    router = Router()
    param, static = handler(), handler()
    router.add("GET", "/users/{id}", param)
    router.add("GET", "/users/me", static)
    me = router.match("GET", "/users/me")
    other = router.match("GET", "/users/7")
    assert me is not None
    assert me[0].handler is static
    assert other is not None
    assert other[0].handler is param


def test_first_param_route_wins() -> None:
    router = Router()
    first, second = handler(), handler()
    router.add("GET", "/a/{x}", first)
    router.add("GET", "/{y}/b", second)
    match = router.match("GET", "/a/b")
    assert match is not None
    assert match[0].handler is first


@pytest.mark.parametrize(("registered", "requested"), [
    ("/users", "/users/"), ("/users/", "/users"), ("/users/{id}", "/users/1/"),
    ("/users/{id}/", "/users/1"), ("/users/{id}/", "/users/1/"),
])
def test_trailing_slash_is_optional(registered: str, requested: str) -> None:
    router = Router()
    router.add("GET", registered, handler())
    assert router.match("GET", requested) is not None


def test_root_route() -> None:
    router = Router()
    router.add("GET", "/", handler())
    assert router.match("GET", "/") is not None
    assert router.match("GET", "/x") is None


def test_path_must_start_with_slash() -> None:
    with pytest.raises(ValueError, match="must start with"):
        Router().add("GET", "users", handler())


@pytest.mark.parametrize(("first", "second"), [
    ("/users", "/users"), ("/users", "/users/"), ("/users/{id}", "/users/{id}"),
    ("/users/{id}", "/users/{name}"),
])
def test_duplicate_route_is_a_value_error(first: str, second: str) -> None:
    router = Router()
    router.add("GET", first, handler())
    with pytest.raises(ValueError, match="duplicate"):
        router.add("get", second, handler())


def test_same_path_different_methods_is_not_a_duplicate() -> None:
    router = Router()
    router.add("GET", "/things/{id}", handler())
    router.add("POST", "/things/{id}", handler())
    router.add("GET", "/x", handler())
    router.add("DELETE", "/x", handler())
    assert router.match("DELETE", "/x") is not None
    assert router.match("POST", "/things/1") is not None


def test_allows() -> None:
    router = Router()
    router.add("POST", "/submit", handler())
    router.add("DELETE", "/items/{id}", handler())
    assert router.allows("/submit")
    assert router.allows("/submit/")
    assert router.allows("/items/3")
    assert not router.allows("/items")
    assert not router.allows("/other")
    assert not Router().allows("/")


def test_allows_ignores_the_trailing_slash_like_match() -> None:
    router = Router()
    router.add("POST", "/trail/", handler())
    assert router.match("POST", "/trail") is not None
    assert router.allows("/trail/")
    assert router.allows("/trail")  # else GET /trail answers 404 instead of 405


def test_iterating_a_router_gives_every_route() -> None:
    router = Router()
    router.add("GET", "/a", handler())
    router.add("GET", "/b/{x}", handler())
    assert sorted(r.path for r in router) == ["/a", "/b/{x}"]


# -- tina4 auth semantics -----------------------------------------------------------

Decorate = Callable[[App, str, str, Handler], Handler]


def plain(app: App, method: str, path: str, h: Handler) -> Handler:
    return app.route(method, path)(h)


def secured_above(app: App, method: str, path: str, h: Handler) -> Handler:
    return secured()(app.route(method, path)(h))


def secured_below(app: App, method: str, path: str, h: Handler) -> Handler:
    return app.route(method, path)(secured()(h))


def noauth_above(app: App, method: str, path: str, h: Handler) -> Handler:
    return noauth()(app.route(method, path)(h))


def noauth_below(app: App, method: str, path: str, h: Handler) -> Handler:
    return app.route(method, path)(noauth()(h))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("decorate", "expected"),
    [
        (plain, None),  # None: reads are open, writes need a token
        (secured_above, True),
        (secured_below, True),
        (noauth_above, False),
        (noauth_below, False),
    ],
)
@pytest.mark.parametrize("path", ["/thing", "/thing/{id}"])
def test_requires_auth(
    method: str, decorate: Decorate, expected: bool | None, path: str
) -> None:
    app = App()
    decorate(app, method, path, handler())
    match = app.router.match(method, path.replace("{id}", "1"))
    assert match is not None
    want = method != "GET" if expected is None else expected
    assert match[0].requires_auth() is want


def test_decorator_syntax_both_orders() -> None:
    app = App()

    @secured()
    @app.get("/a")
    async def a(request: Any, response: Any) -> None: ...

    @app.get("/b")
    @secured()
    async def b(request: Any, response: Any) -> None: ...

    @noauth()
    @app.post("/c")
    async def c(request: Any, response: Any) -> None: ...

    @app.post("/d")
    @noauth()
    async def d(request: Any, response: Any) -> None: ...

    @app.post("/e")
    async def e(request: Any, response: Any) -> None: ...

    @app.get("/f")
    async def f(request: Any, response: Any) -> None: ...

    def needs(method: str, path: str) -> bool:
        match = app.router.match(method, path)
        assert match is not None
        return match[0].requires_auth()

    assert needs("GET", "/a")
    assert needs("GET", "/b")
    assert not needs("POST", "/c")
    assert not needs("POST", "/d")
    assert needs("POST", "/e")
    assert not needs("GET", "/f")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/hello/caf%C3%A9", {"name": "café"}),
        ("/hello/a%2Fb", {"name": "a/b"}),  # an encoded slash stays inside the segment
        ("/hello/a%20b+c", {"name": "a b+c"}),  # '+' is literal in a path
        ("/hello/%E2%98%83", {"name": "☃"}),
        ("/hello/100%25", {"name": "100%"}),
        ("/hello/plain", {"name": "plain"}),
    ],
)
def test_path_parameters_are_percent_decoded_as_utf8(path: str, expected: dict[str, str]) -> None:
    router = Router()
    router.add("GET", "/hello/{name}", handler())
    found = router.match("GET", path)
    assert found is not None and found[1] == expected


def test_an_encoded_slash_never_makes_a_new_segment() -> None:
    router = Router()
    router.add("GET", "/a/{x}/{y}", handler())
    assert router.match("GET", "/a/b%2Fc") is None
    found = router.match("GET", "/a/b%2Fc/d")
    assert found is not None and found[1] == {"x": "b/c", "y": "d"}


@pytest.mark.parametrize("raw", ["%FF", "caf%C3", "%C3%28"])
def test_invalid_utf8_in_a_path_parameter_is_a_400(raw: str) -> None:
    router = Router()
    router.add("GET", "/hello/{name}", handler())
    with pytest.raises(HTTPError) as info:
        router.match("GET", f"/hello/{raw}")
    assert (info.value.status, info.value.code) == (400, "bad_path")


def test_remove_takes_the_route_add_made_and_frees_its_place() -> None:
    """`remove` + `add` is how a mount replaces an app's route (web/centrifugo_mount.py)."""
    router, h = Router(), handler()
    router.add("GET", "/a", h)
    router.add("POST", "/a", h)
    router.add("GET", "/u/{id}", h)
    gone = router.remove("get", "/a/")
    assert gone is not None and (gone.method, gone.path) == ("GET", "/a")
    assert router.match("GET", "/a") is None and router.match("POST", "/a") is not None
    assert router.remove("GET", "/a") is None
    assert router.remove("GET", "/u/{other}") is not None  # same parameter shape
    assert router.match("GET", "/u/1") is None
    router.add("GET", "/a", h)  # no longer a duplicate
