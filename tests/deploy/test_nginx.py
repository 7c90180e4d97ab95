"""deploy/nginx/pubsocket.conf, run by a real nginx in front of two real `pubsocket
serve` processes: a WebSocket at /, under the /rt/ prefix, over TLS, and a node that
drains on SIGTERM while its client reconnects through nginx to the other node."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

import pubsocket.client
from tests.conftest import free_port
from tests.deploy.proc import (
    ROOT,
    Proc,
    certificates,
    env_of,
    fetch,
    init_project,
    proxy_process,
    serving,
)
from tests.tools import require

CONF = ROOT / "deploy" / "nginx" / "pubsocket.conf"


@dataclass
class Site:
    """nginx on `http` (plain) and `https` ports, in front of `nodes`."""

    http: int
    https: int
    nodes: list[Proc]
    api_key: str
    tls: ssl.SSLContext


def _swap(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"{CONF.name} no longer has {old!r}"
    return text.replace(old, new)


@contextmanager
def nginx(tmp: Path, upstreams: list[int], cert_dir: Path) -> Iterator[tuple[int, int]]:
    """Run nginx with the repo's config (ports and paths swapped); yield its ports."""
    binary = require("nginx", "the reverse-proxy tests run the repo's nginx config")
    http_port, https_port = free_port(), free_port()
    conf = CONF.read_text()
    conf = _swap(conf, "listen 80;", f"listen 127.0.0.1:{http_port};")
    conf = _swap(conf, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    conf = _swap(conf, "server 127.0.0.1:7145;", f"server 127.0.0.1:{upstreams[0]};")
    conf = _swap(conf, "server 127.0.0.1:7146;", f"server 127.0.0.1:{upstreams[1]};")
    conf = _swap(conf, "/etc/ssl/pubsocket/", f"{cert_dir}/")
    (tmp / "site.conf").write_text(conf)
    temp = "".join(f"{kind}_temp_path {tmp}/{kind};\n    "
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the test's files
    (tmp / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {tmp}/access.log;\n    {temp}include {tmp}/site.conf;\n}}\n")
    check = subprocess.run([binary, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    with proxy_process([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                        "-g", "daemon off;"], [http_port], "nginx", stop=signal.SIGQUIT):
        yield http_port, https_port


# A reverse proxy run in front of upstream ports: (its dir, the ports, the certificates'
# dir) -> its (plain, TLS) ports while it runs.
Proxy = Callable[[Path, list[int], Path], AbstractContextManager[tuple[int, int]]]


@contextmanager
def site_behind(proxy: Proxy, tmp_path: Path, redis_url: str, **env: str) -> Iterator[Site]:
    """A new project served by two nodes on the Redis at `redis_url` (`env` added to
    theirs), `proxy` in front of them with a test certificate."""
    project = init_project(tmp_path)
    cert_dir = tmp_path / "certs"
    context = certificates(cert_dir)
    with ExitStack() as stack:
        nodes = [stack.enter_context(serving([str(project), "--port", "0"], cwd=tmp_path,
                                             timeout=20.0, PUBSOCKET_BROKER=redis_url, **env))
                 for _ in range(2)]
        (tmp_path / "proxy").mkdir()
        ports = stack.enter_context(proxy(tmp_path / "proxy", [n.port for n in nodes],
                                          cert_dir))
        yield Site(*ports, nodes, env_of(project)["API_KEY"], context)


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[Site]:
    with site_behind(nginx, tmp_path, redis_url, PUBSOCKET_DRAIN_DELAY="1") as running:
        yield running


async def roundtrip(ws_url: str, http_url: str, key: str,
                    context: ssl.SSLContext | None = None) -> None:
    """Subscribe over `ws_url`, publish with POST `http_url`/api/publish (the API key),
    and receive it (the nodes share Redis, so whichever node nginx picks)."""
    async with websockets.connect(ws_url, ssl=context, subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                                  additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": "room:x", "id": "s"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ack"
        for n in range(3):  # a subscribe is live once acked; retry only a slow start
            status, _ = await asyncio.to_thread(
                fetch, "POST", f"{http_url}/api/publish",
                json.dumps({"topic": "room:x", "data": n}).encode(),
                {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                context)
            assert status == 200
            try:  # 2 s: nginx, a node and Redis on a loaded box; a late one still counts
                message = json.loads(await asyncio.wait_for(ws.recv(), 2))
            except TimeoutError:
                continue
            assert message["type"] == "message" and message["data"] in range(n + 1), message
            return
        raise AssertionError("no publish reached the subscriber through nginx")


async def test_websocket_at_the_root_and_under_the_rt_prefix(site: Site) -> None:
    http = f"http://127.0.0.1:{site.http}"
    await roundtrip(f"ws://127.0.0.1:{site.http}/ws/chat", http, site.api_key)
    await roundtrip(f"ws://127.0.0.1:{site.http}/rt/ws/chat", f"{http}/rt", site.api_key)
    for path in ("/rt/healthz", "/healthz"):
        status, body = await asyncio.to_thread(fetch, "GET", http + path)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = await asyncio.to_thread(fetch, "GET", f"{http}/rt/")
    assert status == 200 and b"It works" in body  # the project's page, prefix stripped
    status, body = await asyncio.to_thread(fetch, "GET", f"{http}/rt/pubsocket.js")
    assert status == 200 and b"export function connect" in body


async def test_wss_through_nginx_tls(site: Site) -> None:
    https = f"https://127.0.0.1:{site.https}"
    await roundtrip(f"wss://127.0.0.1:{site.https}/rt/ws/chat", f"{https}/rt",
                    site.api_key, site.tls)


async def test_a_draining_node_sends_its_client_to_the_other_one(site: Site) -> None:
    url = f"ws://127.0.0.1:{site.http}/ws/chat"
    async with pubsocket.client.connect(url, token=site.api_key) as client:
        sub = await client.subscribe("room:moving")
        counts = [await asyncio.to_thread(_connections, n.port, site.api_key)
                  for n in site.nodes]
        assert sorted(counts) == [0, 1], counts
        serving_node = site.nodes[counts.index(1)]
        other = site.nodes[counts.index(0)]
        serving_node.popen.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            while client.state == "connected":
                await asyncio.sleep(0.02)
            while client.state != "connected":  # jittered backoff, then nginx's next node
                await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            while await asyncio.to_thread(_connections, other.port, site.api_key) < 1:
                await asyncio.sleep(0.05)
        status, _ = await asyncio.to_thread(
            fetch, "POST", f"http://127.0.0.1:{other.port}/api/publish",
            json.dumps({"topic": "room:moving", "data": "here"}).encode(),
            {"Authorization": f"Bearer {site.api_key}", "Content-Type": "application/json"})
        assert status == 200
        async with asyncio.timeout(5):  # resubscribed with its position: nothing missed
            event = await anext(aiter(sub))
        assert isinstance(event, pubsocket.client.Message) and event.data == "here", event
    assert serving_node.popen.wait(15) == 0  # the drained node exited cleanly
    assert re.search(r"draining for 1\.0s", serving_node.read())


def _connections(port: int, key: str) -> float:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r"^pubsocket_connections ([\d.e+]+)$", text, re.M)
    assert found is not None
    return float(found.group(1))
