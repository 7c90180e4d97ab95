"""Native TLS: `pubsocket serve --certfile --keyfile` (or PUBSOCKET_CERTFILE/KEYFILE in
the app's .env) serves https:// and wss:// on one port, also with --workers 2. The
certificates come from a throwaway CA (trustme); clients verify them."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets

from tests.conftest import API_KEY, SECRET
from tests.deploy.proc import ROOT, env_of, init_project, run, serving, wait_subscribed


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pems(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def https(method: str, url: str, context: ssl.SSLContext, body: Any = None,
          key: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=5, context=context) as reply:
        return reply.status, json.loads(reply.read())


async def subscribe_and_receive(port: int, key: str, context: ssl.SSLContext,
                                topic: str) -> None:
    """A wss client subscribes; an https publish reaches it."""
    url = f"wss://127.0.0.1:{port}/ws/chat"
    async with websockets.connect(url, ssl=context, subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                                  additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": topic, "id": "s"}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack["type"] == "ack", ack
        await asyncio.to_thread(wait_subscribed, port, key, 1, scheme="https",
                                context=context)
        status, body = await asyncio.to_thread(
            https, "POST", f"https://127.0.0.1:{port}/api/publish", context,
            {"topic": topic, "data": {"over": "tls"}}, key)
        assert status == 200 and body["ok"] is True
        async with asyncio.timeout(5):
            while (message := json.loads(await ws.recv()))["type"] != "message":
                assert message["type"] in ("join", "leave"), message  # presence (chat)
        assert message["data"] == {"over": "tls"}


async def test_serve_with_certfile_and_keyfile_speaks_https_and_wss(
        tmp_path: Path, pems: tuple[Path, Path], client_ssl: ssl.SSLContext) -> None:
    project = init_project(tmp_path)
    key = env_of(project)["API_KEY"]
    certfile, keyfile = pems
    with serving([str(project), "--port", "0", "--certfile", str(certfile),
                  "--keyfile", str(keyfile)], cwd=tmp_path) as proc:
        assert proc.scheme == "https"
        assert f"wss://127.0.0.1:{proc.port}/ws/chat" in proc.read()
        status, body = await asyncio.to_thread(
            https, "GET", f"https://127.0.0.1:{proc.port}/hello/tls", client_ssl)
        assert (status, body) == (200, {"hello": "tls"})
        await subscribe_and_receive(proc.port, key, client_ssl, "room:tls")
        # No plain listener beside it: plain HTTP on the port is not answered as HTTP.
        with pytest.raises(ConnectionError):  # the TLS layer hangs up
            await asyncio.to_thread(urllib.request.urlopen,
                                    f"http://127.0.0.1:{proc.port}/healthz", timeout=5)


async def test_tls_from_the_apps_env_with_two_workers(
        tmp_path: Path, pems: tuple[Path, Path], client_ssl: ssl.SSLContext,
        redis_url: str) -> None:
    project = init_project(tmp_path)
    key = env_of(project)["API_KEY"]
    certfile, keyfile = pems
    with (project / ".env").open("a") as env:
        env.write(f"PUBSOCKET_CERTFILE={certfile}\nPUBSOCKET_KEYFILE={keyfile}\n"
                  f"PUBSOCKET_BROKER={redis_url}\n")
    with serving([str(project), "--port", "0"], cwd=tmp_path) as probe:
        port = probe.port  # a port known to be free: workers need a fixed one
    with serving([str(project), "--port", str(port), "--workers", "2"],
                 cwd=tmp_path) as proc:
        assert proc.scheme == "https" and proc.port == port
        for n in range(4):  # SO_REUSEPORT spreads these over both workers
            await subscribe_and_receive(port, key, client_ssl, f"room:w{n}")
        assert proc.read().count("pubsocket serving on https://") == 1


def test_half_a_tls_configuration_is_a_clear_startup_error(
        tmp_path: Path, pems: tuple[Path, Path]) -> None:
    project = init_project(tmp_path)
    done = run(["serve", str(project), "--port", "0", "--certfile", str(pems[0])], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == ("pubsocket: TLS needs both a certificate and a key: "
                           "PUBSOCKET_KEYFILE (--keyfile) is not set\n")
    done = run(["serve", str(project), "--port", "0", "--certfile", str(pems[1]),
                "--keyfile", str(pems[1])], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"pubsocket: TLS: cannot load the certificate {pems[1]}")


async def test_make_run_reads_the_certificate_from_the_current_directorys_env(
        tmp_path: Path, pems: tuple[Path, Path], client_ssl: ssl.SSLContext) -> None:
    # `make run` serves examples/chat from the repository root, whose .env it writes:
    # the settings there (PUBSOCKET_CERTFILE/KEYFILE) apply, and the banner says wss.
    certfile, keyfile = pems
    (tmp_path / ".env").write_text(f"API_KEY={API_KEY}\nSECRET={SECRET}\n"
                                   f"PUBSOCKET_CERTFILE={certfile}\n"
                                   f"PUBSOCKET_KEYFILE={keyfile}\n")
    with serving([str(ROOT / "examples" / "chat"), "--port", "0"], cwd=tmp_path) as proc:
        assert proc.scheme == "https"
        banner = proc.read()
        assert f"wss://127.0.0.1:{proc.port}/ws/chat" in banner
        assert f"https://127.0.0.1:{proc.port}/admin" in banner
        await subscribe_and_receive(proc.port, API_KEY, client_ssl, "room:make-run")
