"""`Headers`, `Request` (params, body, cookies) and the `response` factory."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pubsocket.web import Headers, Request, Response, ResponseFactory


def request(
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    path_params: dict[str, str] | None = None,
    method: str = "get",
) -> Request:
    return Request(method, target, Headers(headers or []), body, path_params)


# -- Headers ----------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    h = Headers([("Content-Type", "application/json"), ("X-Thing", "1")])
    assert h["content-type"] == "application/json"
    assert h["CONTENT-TYPE"] == "application/json"
    assert "x-THING" in h
    assert "missing" not in h
    assert 42 not in h
    assert h.get("X-Missing") is None
    assert h.get("x-missing", "d") == "d"
    with pytest.raises(KeyError):
        h["nope"]


def test_headers_getall_keeps_order_across_spellings() -> None:
    h = Headers([("Set-Thing", "a"), ("other", "x"), ("set-thing", "b"), ("SET-THING", "c")])
    assert h["set-thing"] == "a"
    assert h.getall("Set-Thing") == ["a", "b", "c"]
    assert h.getall("absent") == []
    assert len(h) == 2
    assert sorted(h) == ["other", "set-thing"]


def test_headers_getall_returns_a_copy() -> None:
    h = Headers([("a", "1")])
    h.getall("a").append("2")
    assert h.getall("a") == ["1"]


def test_headers_raw_keeps_the_original_items() -> None:
    items = [("X-A", "1"), ("x-a", "2")]
    assert Headers(items).raw() == items


# -- Request ------------------------------------------------------------------------------


def test_request_splits_target() -> None:
    r = request("/a/b?x=1&y=2")
    assert r.method == "GET"
    assert r.path == "/a/b"
    assert r.query_string == "x=1&y=2"
    assert r.url == "/a/b?x=1&y=2"
    assert not r.is_upgrade


def test_params_merge_query_and_path_with_path_winning() -> None:
    r = request("/users/7?id=99&sort=asc&blank=", path_params={"id": "7"})
    assert r.params == {"id": "7", "sort": "asc", "blank": ""}


def test_params_decode_query() -> None:
    assert request("/?q=a%20b+c&e=%C3%A9").params == {"q": "a b c", "e": "é"}


def test_params_without_query() -> None:
    assert request("/x").params == {}


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "APPLICATION/JSON", "application/vnd.api+json"])
def test_json_body(ctype: str) -> None:
    r = request(headers=[("Content-Type", ctype)], body=b'{"a": [1, 2]}')
    assert r.body == {"a": [1, 2]}


def test_json_list_body() -> None:
    assert request(headers=[("content-type", "application/json")], body=b"[1]").body == [1]


def test_invalid_json_stays_raw_bytes() -> None:
    raw = b'{"a": '
    assert request(headers=[("Content-Type", "application/json")], body=raw).body == raw


def test_form_body() -> None:
    r = request(headers=[("Content-Type", "application/x-www-form-urlencoded")],
                body=b"name=J%C3%B6rg&x=&y=a+b")
    assert r.body == {"name": "Jörg", "x": "", "y": "a b"}


def test_text_body_is_str() -> None:
    r = request(headers=[("Content-Type", "text/plain; charset=utf-8")], body="héllo".encode())
    assert r.body == "héllo"


def test_text_body_with_invalid_utf8_is_replaced_not_raised() -> None:
    r = request(headers=[("Content-Type", "text/plain")], body=b"a\xffb")
    assert r.body == "a\ufffdb"


@pytest.mark.parametrize("headers", [[], [("Content-Type", "application/octet-stream")]])
def test_other_body_is_raw_bytes(headers: list[tuple[str, str]]) -> None:
    assert request(headers=headers, body=b"\x00\x01").body == b"\x00\x01"


@pytest.mark.parametrize("ctype", ["application/json", "text/plain",
                                   "application/x-www-form-urlencoded", ""])
def test_empty_body_is_none(ctype: str) -> None:
    assert request(headers=[("Content-Type", ctype)]).body is None


def test_body_is_parsed_once() -> None:
    r = request(headers=[("Content-Type", "application/json")], body=b'{"a": 1}')
    first = r.body
    assert r.body is first


def test_cookies_from_every_header() -> None:
    r = request(headers=[("Cookie", "a=1; b=two"), ("cookie", 'c="q v"')])
    assert r.cookies == {"a": "1", "b": "two", "c": "q v"}


def test_no_cookies() -> None:
    assert request().cookies == {}


@pytest.mark.parametrize("bad", ["=;;=", '"', "a=1; ;;; b", "\x00=\x01", "; ; ;"])
def test_malformed_cookie_header_does_not_raise_and_spares_good_headers(bad: str) -> None:
    r = request(headers=[("Cookie", bad), ("Cookie", "good=yes")])
    cookies = r.cookies
    assert cookies["good"] == "yes"


def test_claims_start_empty() -> None:
    assert request().claims is None


# -- response ---------------------------------------------------------------------------

response = ResponseFactory()


@pytest.mark.parametrize(("content", "body"), [
    ({"a": 1, "b": [True, None]}, {"a": 1, "b": [True, None]}),
    ([1, "two"], [1, "two"]),
    ([], []),
    ({}, {}),
    (0, 0),
    (False, False),
])
def test_json_responses(content: Any, body: Any) -> None:
    r = response(content)
    assert isinstance(r, Response)
    assert r.status == 200
    assert r.content_type == "application/json"
    assert orjson.loads(r.body) == body


def test_str_response_is_html() -> None:
    r = response("<p>héllo</p>")
    assert r.body == "<p>héllo</p>".encode()
    assert r.content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize("content", [b"\x00raw", bytearray(b"\x00raw"), memoryview(b"\x00raw")])
def test_bytes_response(content: bytes | bytearray | memoryview) -> None:
    r = response(content)
    assert r.body == b"\x00raw"
    assert type(r.body) is bytes
    assert r.content_type == "application/octet-stream"


def test_none_response_is_empty() -> None:
    r = response(None, 204)
    assert r.status == 204
    assert r.body == b""
    assert r.content_type.startswith("text/plain")


def test_custom_status_content_type_and_headers() -> None:
    r = response("a,b\n", http_code=201, content_type="text/csv",
                 headers={"X-Id": "7", "Cache-Control": "no-store"})
    assert r.status == 201
    assert r.content_type == "text/csv"
    assert r.headers == [("X-Id", "7"), ("Cache-Control", "no-store")]
    assert r.body == b"a,b\n"


def test_custom_content_type_for_json_content() -> None:
    r = response({"a": 1}, content_type="application/problem+json")
    assert r.content_type == "application/problem+json"
    assert orjson.loads(r.body) == {"a": 1}


def test_unserializable_content_raises() -> None:
    with pytest.raises(TypeError):
        response({"a": object()})
