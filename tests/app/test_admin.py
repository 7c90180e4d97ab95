"""The ops page over a real server: the open shell, the API-key-only stats and their
numbers from real WebSocket clients, and the bounded ring of recent warnings."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, admin, pubsub
from pubsocket.auth import Authenticator
from pubsocket.web.recent import MAX_MESSAGE, MAX_RECORDS, RecentHandler, install
from tests.app.test_http import ahttp
from tests.app.test_pubsub import V1, assert_subscribe_ack, cmd, recv_json
from tests.conftest import API_KEY, SECRET, make_settings

KEY = {"Authorization": f"Bearer {API_KEY}"}


def admin_app(**changes: Any) -> App:
    app = App(make_settings(**changes))
    pubsub("/ws/chat", app=app)
    admin(app=app)
    return app


async def stats(base: str, headers: dict[str, str] | None = None,
                path: str = "/admin/stats") -> tuple[int, Any]:
    status, _, body = await ahttp("GET", base + path, headers=KEY if headers is None else headers)
    return status, json.loads(body)


async def until_stats(base: str, check: Any, timeout: float = 3.0) -> Any:
    """Poll the stats (bounded) until `check(stats)` holds; return them."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        status, body = await stats(base)
        assert status == 200, body
        if check(body):
            return body
        assert time.monotonic() < deadline, f"stats never matched: {body}"
    raise AssertionError("unreachable")


async def v1_subscribe(ws: ClientConnection, topic: str) -> None:
    await ws.send(cmd("subscribe", topic, id=topic))
    assert_subscribe_ack(await recv_json(ws), topic, topic)


async def test_the_page_is_open_html_with_its_assets_and_no_data(serve_any: Any) -> None:
    srv = await serve_any(admin_app())
    status, raw, body = await ahttp("GET", srv.http + "/admin")
    headers = {k.lower(): v for k, v in raw.items()}
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    page = body.decode()
    assert "<title>pubsocket ops</title>" in page
    assert 'src="/admin/admin.js"' in page and 'data-base="/admin"' in page
    assert "{{base}}" not in page and API_KEY not in page
    for asset, ctype in (("admin.js", "text/javascript"), ("admin.css", "text/css")):
        status, raw, body = await ahttp("GET", f"{srv.http}/admin/{asset}")
        ctypes = [v for k, v in raw.items() if k.lower() == "content-type"]
        assert status == 200 and ctypes[0].startswith(ctype) and body


async def test_another_mount_path_names_its_own_assets(serve: Any) -> None:
    app = App(make_settings())
    admin("/ops/", app=app)
    srv = await serve(app)
    _, _, body = await ahttp("GET", srv.http + "/ops")
    assert 'src="/ops/admin.js"' in body.decode()
    assert (await stats(srv.http, path="/ops/stats"))[0] == 200


async def test_stats_need_the_api_key(serve_any: Any) -> None:
    srv = await serve_any(admin_app())
    status, body = await stats(srv.http, headers={})
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await stats(srv.http, headers={"Authorization": "Bearer not-the-key"})
    assert status == 401
    user = Authenticator(API_KEY, SECRET).issue("alice", 3600, {})
    status, body = await stats(srv.http, headers={"Authorization": f"Bearer {user}"})
    assert status == 403 and body["error"] == "forbidden"
    # A JWT that claims the API key's sub is still a user.
    fake = Authenticator(API_KEY, SECRET).issue("api_key", 3600, {})
    assert (await stats(srv.http, headers={"Authorization": f"Bearer {fake}"}))[0] == 403
    status, body = await stats(srv.http)
    assert status == 200 and body["connections"] == 0


async def test_stats_count_real_connections_topics_and_deliveries(serve: Any) -> None:
    srv = await serve(admin_app())
    before = (await stats(srv.http))[1]
    assert before["topics"] == {"count": 0, "top": []}
    url = f"{srv.ws}/ws/chat"
    async with connect(url, subprotocols=V1) as a, connect(url, subprotocols=V1) as b:  # type: ignore[list-item]
        await v1_subscribe(a, "room")
        await v1_subscribe(b, "room")
        await v1_subscribe(a, "b-side")
        await v1_subscribe(b, "a-side")
        status, _, reply = await ahttp(
            "POST", srv.http + "/api/publish", json.dumps({"topic": "room", "data": 7}).encode(),
            {**KEY, "Content-Type": "application/json"})
        assert status == 200, reply
        for ws in (a, b):
            assert (await recv_json(ws))["data"] == 7
        now = (await stats(srv.http))[1]
        assert now["connections"] == 2
        assert now["subscriptions"] == 4
        assert now["topics"] == {"count": 3, "top": [
            {"topic": "room", "subscribers": 2}, {"topic": "a-side", "subscribers": 1},
            {"topic": "b-side", "subscribers": 1}]}
        counters = now["counters"]
        assert counters["published"] - before["counters"]["published"] == 1
        assert counters["deliveries"] - before["counters"]["deliveries"] == 2
        assert now["transport"]["messages_in"] - before["transport"]["messages_in"] == 4
        assert now["transport"]["slow_consumer_closes"] == 0
        assert now["broker"] == {"kind": "memory", "healthy": True, "reader_restarts": 0,
                                 "reconnects": 0, "publish_errors": 0,
                                 "publish_latency_seconds": 0.0}
        assert now["presence"] == {"enabled": False, "patterns": [], "events": True}
        assert now["node"]["pid"] == os.getpid()
        assert now["uptime_seconds"] >= before["uptime_seconds"]
    after = await until_stats(srv.http, lambda s: s["connections"] == 0)
    assert after["topics"] == {"count": 0, "top": []} and after["subscriptions"] == 0


async def test_stats_and_metrics_read_the_same_numbers(serve: Any) -> None:
    srv = await serve(admin_app())
    _, body = await stats(srv.http)
    _, _, text = await ahttp("GET", srv.http + "/metrics", headers=KEY)
    metrics = dict(line.rsplit(" ", 1) for line in text.decode().splitlines()
                   if line and not line.startswith("#"))
    assert float(metrics["pubsocket_connections"]) == body["connections"]
    for name, value in body["counters"].items():
        assert float(metrics[f"pubsocket_{name}_total"]) == value, name


async def test_recent_errors_keep_the_last_warnings_bounded_and_without_tracebacks(
        serve: Any) -> None:
    srv = await serve(admin_app())
    install().clear()
    log = logging.getLogger("pubsocket.test_admin")
    log.info("not kept: below WARNING")
    logging.getLogger("elsewhere").warning("not kept: not a pubsocket logger")
    try:
        raise RuntimeError("SECRET-INTERNALS")
    except RuntimeError:
        log.exception("a handler failed")
    log.error("x" * 2000)
    for i in range(200):
        log.warning("warning %d", i)
    _, body = await stats(srv.http)
    recent = body["recent_errors"]
    assert len(recent) == MAX_RECORDS == 50
    assert [r["message"] for r in recent] == [f"warning {i}" for i in range(150, 200)]
    assert recent[-1]["level"] == "WARNING" and recent[-1]["logger"] == "pubsocket.test_admin"
    assert abs(recent[-1]["time"] - time.time()) < 60
    install().clear()
    log.exception("a handler failed", exc_info=RuntimeError("SECRET-INTERNALS"))
    log.error("x" * 2000)
    _, body = await stats(srv.http)
    first, long = body["recent_errors"]
    assert first == {**first, "level": "ERROR", "message": "a handler failed"}
    assert "SECRET-INTERNALS" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert len(long["message"]) == MAX_MESSAGE and long["message"].endswith("…")


def test_install_is_once_per_process() -> None:
    root = logging.getLogger("pubsocket")
    assert install() is install()
    assert sum(h is install() for h in root.handlers) == 1


def test_the_ring_keeps_last_resort_output_when_it_is_the_only_handler(
        capsys: pytest.CaptureFixture[str]) -> None:
    """An app that never configured logging still sees its warnings on stderr."""
    ring = RecentHandler(capacity=3)
    alone = logging.getLogger("pubsocket_ring_alone")
    alone.propagate = False
    alone.addHandler(ring)
    try:
        alone.warning("seen on stderr")
        assert capsys.readouterr().err == "seen on stderr\n"
        other = logging.StreamHandler()
        alone.addHandler(other)
        try:
            alone.warning("seen once, by the other handler")
        finally:
            alone.removeHandler(other)
        assert capsys.readouterr().err.count("seen once") == 1
        assert [r["message"] for r in ring.records()] == [
            "seen on stderr", "seen once, by the other handler"]
    finally:
        alone.removeHandler(ring)


async def test_the_busiest_topics_of_a_large_hub_are_computed_once_a_second(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past TOP_TOPICS_FRESH topics the O(topics) walk is done at most once a second,
    # however many ops pages poll; a small hub's list is always fresh (above).
    admin_module = importlib.import_module("pubsocket.web.admin")  # not the function
    monkeypatch.setattr(admin_module, "TOP_TOPICS_FRESH", 3)
    srv = await serve(admin_app())
    async with connect(f"{srv.ws}/ws/chat", subprotocols=V1) as a:  # type: ignore[list-item]
        for topic in ("t1", "t2", "t3", "t4"):
            await v1_subscribe(a, topic)
        first = (await stats(srv.http))[1]["topics"]
        assert first["count"] == 4 and len(first["top"]) == 4
        await v1_subscribe(a, "t5")
        started = time.monotonic()
        cached = (await stats(srv.http))[1]["topics"]
        if time.monotonic() - started < 0.9:  # else a loaded box let the second pass
            assert cached == {"count": 5, "top": first["top"]}  # the count is live
        for _ in range(25):  # bounded: 5 s at one poll per 0.2 s (the page polls at 1 s)
            later = (await stats(srv.http))[1]["topics"]
            if len(later["top"]) == 5:
                break
            await asyncio.sleep(0.2)
        assert {t["topic"] for t in later["top"]} == {"t1", "t2", "t3", "t4", "t5"}
