"""The suite's own tooling: the session Redis is ours, and `require` skips or fails."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.redis_server import RedisProcess, external_url, ping, redis_binary
from tests.tools import require


def test_session_redis_is_started_on_a_free_port_not_6379(redis_url: str) -> None:
    port = urlsplit(redis_url).port
    assert port is not None and ping(port)
    if external_url() is None:  # our own server, never the machine's default one
        assert port != 6379


def test_redis_process_starts_answers_and_dies_on_kill() -> None:
    assert redis_binary() is not None
    server = RedisProcess().start()
    assert ping(server.port)
    server.kill()
    assert not ping(server.port)
    server.kill()  # idempotent


def test_require_finds_a_present_tool_and_module() -> None:
    assert require("python3", "the interpreter").endswith("python3")
    assert require("json", "a stdlib module") == "json"


def test_require_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-x not found \\(a reason\\)"):
        require("no-such-tool-x", "a reason")


def test_require_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true makes it mandatory"):
        require("no-such-tool-x", "a reason")
