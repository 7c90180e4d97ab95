"""deploy/caddy/Caddyfile, run by a real Caddy in front of two real `pubsocket serve`
processes on one Redis: a WebSocket at /, under the /rt/ prefix, and over TLS."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.proc import (
    ROOT,
    fetch,
    proxy_process,
)
from tests.deploy.test_nginx import Site, roundtrip, site_behind
from tests.tools import require

CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def _swap(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"{CADDYFILE.name} no longer has {old!r}"
    return text.replace(old, new)


@contextmanager
def caddy(tmp: Path, upstreams: list[int], cert_dir: Path) -> Iterator[tuple[int, int]]:
    """Run Caddy with the repo's Caddyfile (site, ports and paths swapped); yield its
    plain and TLS ports. The plain site imports the same snippet."""
    binary = require("caddy", "the reverse-proxy tests run the repo's Caddyfile")
    http_port, https_port = free_port(), free_port()
    conf = CADDYFILE.read_text()
    conf = _swap(conf, "127.0.0.1:7145 127.0.0.1:7146",
                 f"127.0.0.1:{upstreams[0]} 127.0.0.1:{upstreams[1]}")
    conf = _swap(conf, "/etc/ssl/pubsocket/", f"{cert_dir}/")
    conf = _swap(conf, "chat.example.com {", f"https://127.0.0.1:{https_port} {{")
    # Test-only: no admin endpoint, no ACME, no redirect listener on port 80.
    conf = ("{\n\tadmin off\n\tauto_https disable_redirects\n\tskip_install_trust\n}\n\n"
            + conf + f"\nhttp://127.0.0.1:{http_port} {{\n\timport pubsocket\n}}\n")
    (tmp / "Caddyfile").write_text(conf)
    env = {**os.environ, "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
           "XDG_CONFIG_HOME": str(tmp / "config")}
    check = subprocess.run([binary, "validate", "--config", str(tmp / "Caddyfile"),
                            "--adapter", "caddyfile"], capture_output=True, text=True,
                           timeout=30, env=env)
    assert check.returncode == 0, check.stderr
    with proxy_process([binary, "run", "--config", str(tmp / "Caddyfile"), "--adapter",
                        "caddyfile"], [http_port, https_port], "caddy", env=env):
        yield http_port, https_port


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[Site]:
    with site_behind(caddy, tmp_path, redis_url) as running:
        yield running


async def test_websocket_at_the_root_and_under_the_rt_prefix(site: Site) -> None:
    http = f"http://127.0.0.1:{site.http}"
    await roundtrip(f"ws://127.0.0.1:{site.http}/ws/chat", http, site.api_key)
    await roundtrip(f"ws://127.0.0.1:{site.http}/rt/ws/chat", f"{http}/rt", site.api_key)
    status, body = await asyncio.to_thread(fetch, "GET", f"{http}/rt/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = await asyncio.to_thread(fetch, "GET", f"{http}/rt/pubsocket.js")
    assert status == 200 and b"export function connect" in body


async def test_wss_through_caddy_tls(site: Site) -> None:
    https = f"https://127.0.0.1:{site.https}"
    await roundtrip(f"wss://127.0.0.1:{site.https}/ws/chat", https, site.api_key, site.tls)
    await roundtrip(f"wss://127.0.0.1:{site.https}/rt/ws/chat", f"{https}/rt",
                    site.api_key, site.tls)
