"""``PUBSOCKET_CENTRIFUGO_CONFIG`` alone makes `pubsocket serve` a Centrifugo: real server
processes (web/centrifugo_mount.py), the official SDK (centrifuge-python) and `cent`.

The file mounts the Centrifuge endpoint and the server API over the app's own: an app
folder with an empty ``src/routes`` and no ``SECRET``/``API_KEY`` serves them; the chat
example keeps ``/ws/chat`` on its ``SECRET`` beside the file's ``/connection/websocket``
on the file's key, one hub; an app's own ``/connection/websocket`` and ``/api/<method>``
are replaced (and the replacement logged)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cent import AsyncClient, InfoRequest, PublishRequest
from websockets.asyncio.client import connect

from centrifuge import Client
from tests.centrifuge.conftest import PATH, Events, client_events, sub_events, token
from tests.integration.spawn import ROOT, spawn

KEY = "config-only-secret-0123456789abcdef"  # the file's, never SECRET's (tests.conftest)
API = "config-only-api-key"
ROOM = {"name": "room", "history_size": 10, "history_ttl": "60s", "presence": True,
        "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True}
CONFIG = {"client": {"token": {"hmac_secret_key": KEY}},
          "http_api": {"key": API},
          "channel": {"namespaces": [ROOM]},
          "log": {"level": "debug"}}  # not implemented: reported at startup by name


# API_KEY="" and SECRET="" below: not set (spawn sets both otherwise).


def write(tmp_path: Path, config: dict[str, Any], routes: str = "") -> tuple[Path, Path]:
    """An app folder (src/routes empty unless `routes`) and a config file beside it."""
    app = tmp_path / "app"
    (app / "src" / "routes").mkdir(parents=True)
    if routes:
        (app / "src" / "routes" / "own.py").write_text(routes)
    path = tmp_path / "centrifugo.json"
    path.write_text(json.dumps(config))
    return app, path


def file_token(sub: str) -> str:
    return jwt.encode({"sub": sub}, KEY, algorithm="HS256")


@asynccontextmanager
async def sdk(url: str, **kwargs: Any) -> AsyncIterator[tuple[Client, Events]]:
    events = Events()
    client = Client(url, events=client_events(events), timeout=5,
                    min_reconnect_delay=5, **kwargs)
    await client.connect()
    try:
        yield client, events
    finally:
        await client.disconnect()


async def subscribed(client: Client, channel: str) -> Events:
    events = Events()
    sub = client.new_subscription(channel, events=sub_events(events))
    await sub.subscribe()
    await events.next("subscribed")
    return events


async def test_the_config_alone_serves_the_sdk_and_cent(tmp_path: Path) -> None:
    """Empty src/routes, no SECRET or API_KEY: the file's key signs the SDK's token, its
    http_api.key lets `cent` publish, the SDK receives it; the banner names the file's
    endpoints and the unsupported ``log`` key is reported."""
    app, config = write(tmp_path, CONFIG)
    with spawn(app, PUBSOCKET_CENTRIFUGO_CONFIG=str(config), API_KEY="", SECRET="") as proc:
        banner = proc.output.decode()
        assert "not supported, ignored: log" in banner
        assert "/connection/websocket" in banner and "/api/<method>" in banner
        assert str(config) in banner
        async with sdk(f"ws://127.0.0.1:{proc.port}{PATH}",
                       token=file_token("ann")) as (client, events):
            await events.next("connected")
            room = await subscribed(client, "room:1")
            async with AsyncClient(f"http://127.0.0.1:{proc.port}/api", API,
                                   timeout=5) as api:
                result = await api.publish(PublishRequest(channel="room:1", data={"n": 1}))
            pub = (await room.next("publication")).pub
            assert (pub.data, pub.offset) == ({"n": 1}, result.offset) and pub.offset == 1


async def test_client_insecure_admits_an_anonymous_sdk_client(tmp_path: Path) -> None:
    config = {"client": {"insecure": True}, "http_api": {"key": API},
              "channel": {"without_namespace": {"history_size": 5, "history_ttl": "60s"}}}
    app, path = write(tmp_path, config)
    with spawn(app, PUBSOCKET_CENTRIFUGO_CONFIG=str(path), API_KEY="", SECRET="") as proc:
        assert "client.insecure" in proc.output.decode()
        async with sdk(f"ws://127.0.0.1:{proc.port}{PATH}") as (client, events):
            assert (await events.next("connected")).client  # no token at all
            news = await subscribed(client, "news")
            await client.publish("news", {"hi": 1})  # insecure: every action allowed
            assert (await news.next("publication")).pub.data == {"hi": 1}


async def test_the_chat_example_keeps_ws_chat_beside_the_files_endpoint(
        tmp_path: Path) -> None:
    """`make run` + the file: /ws/chat (pubsocket.v1, the app's SECRET) and the file's
    /connection/websocket (its hmac key) on one hub; the example's own Centrifuge
    endpoint (SECRET tokens) is replaced: a SECRET-signed token is refused there."""
    _, config = write(tmp_path, CONFIG)
    with spawn(ROOT / "examples/chat", PUBSOCKET_CENTRIFUGO_CONFIG=str(config)) as proc:
        url = f"ws://127.0.0.1:{proc.port}"
        async with sdk(url + PATH, token=file_token("ann")) as (client, events), \
                connect(url + "/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                        additional_headers={"Authorization": f"Bearer {token('bob')}"}
                        ) as v1:
            await events.next("connected")
            room = await subscribed(client, "room:1")
            await v1.send(json.dumps({"action": "subscribe", "topic": "room:1", "id": 1}))
            assert json.loads(await v1.recv())["type"] == "ack"
            await client.publish("room:1", {"from": "sdk"})
            assert (await room.next("publication")).pub.data == {"from": "sdk"}
            message = json.loads(await v1.recv())
            assert (message["type"], message["data"]) == ("message", {"from": "sdk"})
        async with sdk(url + PATH, token=token("eve")) as (_, refused):
            assert (await refused.next("disconnected")).code == 3500  # invalid token


OWN_ROUTES = """
from pubsocket import noauth, post, pubsub


@noauth()
@post("/api/info")  # before pubsub(), which then leaves it to the app
async def info(request, response):
    return response({"result": {"nodes": [{"name": "the app's own"}]}})


pubsub("/connection/websocket", protocol="centrifuge", secured=True)
"""


async def test_an_apps_own_endpoint_and_api_routes_are_replaced(tmp_path: Path) -> None:
    """The app mounts a secured /connection/websocket and its own POST /api/info; the
    file (insecure) takes both: an anonymous SDK client connects, `cent`'s info is the
    server API's, and the log names what was replaced."""
    config = {"client": {"insecure": True}, "http_api": {"key": API}}
    app, path = write(tmp_path, config, OWN_ROUTES)
    with spawn(app, PUBSOCKET_CENTRIFUGO_CONFIG=str(path), PUBSOCKET_LOG_LEVEL="INFO",
               API_KEY="", SECRET="") as proc:
        log = proc.output.decode()
        assert ("replaces what the app's pubsub() mounted at GET /connection/websocket"
                in log)  # and its server API routes, in one line
        assert "replaces the app's POST /api/info (_pubsocket_routes_" in log  # own code
        async with sdk(f"ws://127.0.0.1:{proc.port}{PATH}") as (client, events):
            await events.next("connected")  # the app's own would need a token
            await subscribed(client, "news")
            async with AsyncClient(f"http://127.0.0.1:{proc.port}/api", API,
                                   timeout=5) as api:
                nodes = (await api.info(InfoRequest())).nodes
            assert len(nodes) == 1 and nodes[0].name != "the app's own"
            assert nodes[0].num_clients == 1


def test_an_app_built_in_code_gets_the_files_endpoints_only_when_asked(
        tmp_path: Path) -> None:
    """`App(settings)` mounts nothing by itself; `mount_centrifugo(app)` does, and is a
    no-op without a file."""
    from pubsocket import App, ConfigError, Settings
    from pubsocket.web import mount_centrifugo

    _, path = write(tmp_path, CONFIG)
    assert not mount_centrifugo(App(Settings()))
    app = App(Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path)}, env_file=None))
    assert app.router.match("GET", PATH) is None
    assert mount_centrifugo(app)
    assert {r.path for r in app.router} >= {PATH, "/connection/uni_sse", "/api/publish",
                                             "/api/batch", "/emulation"}
    path.write_text(json.dumps({"http_api": {"key": API}}))  # no key, not insecure
    keyless = App(Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path)},
                                    env_file=None))
    with pytest.raises(ConfigError, match=r"client\.token\.hmac_secret_key"):
        mount_centrifugo(keyless)


async def test_anonymous_connect_without_token_keeps_the_permissions(
        serve: Any, tmp_path: Path) -> None:
    """``client.allow_anonymous_connect_without_token``: no token needed to connect, but
    unlike insecure a namespace without ``allow_subscribe_for_anonymous`` says 103."""
    from pubsocket import App, Settings
    from pubsocket.web import mount_centrifugo

    config = {"client": {"allow_anonymous_connect_without_token": True},
              "channel": {"namespaces": [
                  {"name": "open", "allow_subscribe_for_anonymous": True,
                   "allow_subscribe_for_client": True},
                  {"name": "members", "allow_subscribe_for_client": True}]}}
    _, path = write(tmp_path, config)
    app = App(Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path)}, env_file=None))
    mount_centrifugo(app)
    srv = await serve(app)
    async with sdk(srv.ws + PATH) as (client, events):
        await events.next("connected")
        await subscribed(client, "open:1")
        refused = Events()
        sub = client.new_subscription("members:1", events=sub_events(refused))
        await sub.subscribe()
        assert (await refused.next("unsubscribed")).code == 103
