"""A server configured by a Centrifugo config file (PUBSOCKET_CENTRIFUGO_CONFIG): the
SDK connects with a token signed by its hmac_secret_key, the namespaces' permissions,
history and presence apply, and `cent` uses its http_api.key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cent import (
    AsyncClient,
    CentUnauthorizedError,
    HistoryRequest,
    InfoRequest,
    PresenceStatsRequest,
    PublishRequest,
)

from centrifuge import Client, ReplyError
from pubsocket import App, Settings, pubsub
from tests.centrifuge.conftest import PATH, Events, client_events, sub_events
from tests.conftest import API_KEY

CONFIG = {
    "client": {"token": {"hmac_secret_key": "file-secret-0123456789abcdef0123"}},
    "http_api": {"key": "file-api-key"},
    "channel": {
        "without_namespace": {"allow_subscribe_for_client": True},
        "namespaces": [
            {"name": "chat", "presence": True, "history_size": 5, "history_ttl": "60s",
             "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True},
            {"name": "private", "history_size": 5, "history_ttl": "60s"},
            # only a subscription token subscribes; its subscribers may publish and ask
            # presence; join/leave pushed to every subscriber; no history kept
            {"name": "team", "presence": True, "join_leave": True,
             "force_push_join_leave": True, "allow_publish_for_subscriber": True,
             "allow_presence_for_subscriber": True, "allow_history_for_subscriber": True},
        ],
    },
}


def file_app(tmp_path: Path, config: dict[str, Any] = CONFIG) -> App:
    """An app whose Centrifuge surface at `PATH` comes from `config`, written to a
    Centrifugo config file in `tmp_path` (API_KEY as the app's own key)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    settings = Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path),
                                  "API_KEY": API_KEY}, env_file=None)
    app = App(settings)
    pubsub(PATH, app=app, protocol="centrifuge", secured=True)
    return app


def file_token(sub: str, **claims: Any) -> str:
    secret = CONFIG["client"]["token"]["hmac_secret_key"]  # type: ignore[index]
    return jwt.encode({"sub": sub, **claims}, secret, algorithm="HS256")


async def test_a_config_file_drives_tokens_permissions_history_and_the_api(
        serve: Any, tmp_path: Path) -> None:
    srv = await serve(file_app(tmp_path))
    events = Events()
    client = Client(srv.ws + PATH, events=client_events(events), token=file_token("ann"),
                    timeout=5, min_reconnect_delay=5)
    await client.connect()
    try:
        await events.next("connected")
        chat_events = Events()
        chat = client.new_subscription("chat:1", events=sub_events(chat_events))
        await chat.subscribe()
        await chat_events.next("subscribed")
        await chat.publish({"hi": 1})  # allow_publish_for_subscriber
        assert (await chat_events.next("publication")).pub.offset == 1
        for channel, code, reason in (("private:1", 103, "permission denied"),
                                      ("nowhere:1", 102, "unknown channel")):
            refused = Events()  # no subscribe permission / no such namespace
            sub = client.new_subscription(channel, events=sub_events(refused))
            await sub.subscribe()
            ctx = await refused.next("unsubscribed")
            assert (ctx.code, ctx.reason) == (code, reason)
        with pytest.raises(ReplyError) as info:  # no publish permission without namespace
            await client.publish("lobby", 1)
        assert info.value.code == 103
        async with AsyncClient(srv.http + "/api", "file-api-key", timeout=5) as api:
            history = await api.history(HistoryRequest(channel="chat:1", limit=5))
            assert [p.data for p in history.publications] == [{"hi": 1}]
            stats = await api.presence_stats(PresenceStatsRequest(channel="chat:1"))
            assert stats.num_users == 1
            pub = await api.publish(PublishRequest(channel="private:1", data=1))
            assert pub.offset == 1  # the server API is not limited by namespaces
        async with AsyncClient(srv.http + "/api", API_KEY, timeout=5) as api:
            with pytest.raises(CentUnauthorizedError):  # http_api.key, not API_KEY
                await api.info(InfoRequest())
    finally:
        await client.disconnect()


async def test_subscriber_permissions_need_the_subscription_and_features_off_say_108(
        serve: Any, tmp_path: Path) -> None:
    """``allow_*_for_subscriber`` holds while subscribed (here on a subscription token,
    which no subscribe rule of the file allows), as Centrifugo reads it; presence and
    history off in a namespace are 108 before any permission, an unknown namespace 102;
    ``force_push_join_leave`` pushes joins to a subscriber that did not ask for them."""
    srv = await serve(file_app(tmp_path))
    clients = []
    try:
        for user in ("ann", "bob"):
            events = Events()
            client = Client(srv.ws + PATH, events=client_events(events),
                            token=file_token(user), timeout=5, min_reconnect_delay=5)
            await client.connect()
            await events.next("connected")
            clients.append(client)
        ann, bob = clients
        for call, code in ((ann.publish("team:1", 1), 103),  # not subscribed yet
                           (ann.presence("team:1"), 103),
                           (ann.history("team:1"), 108),  # no history in the namespace
                           (ann.presence("private:1"), 108),  # no presence there
                           (ann.publish("nowhere:1", 1), 102)):
            with pytest.raises(ReplyError) as info:
                await call
            assert info.value.code == code
        ann_events = Events()
        sub = ann.new_subscription("team:1", events=sub_events(ann_events),
                                   token=file_token("ann", channel="team:1"))
        await sub.subscribe()
        await ann_events.next("subscribed")
        await ann.publish("team:1", {"hi": 1})  # subscribed now
        assert (await ann_events.next("publication")).pub.data == {"hi": 1}
        assert [c.user for c in (await ann.presence("team:1")).clients.values()] == ["ann"]
        bob_sub = bob.new_subscription("team:1", events=sub_events(Events()),
                                       token=file_token("bob", channel="team:1"))
        await bob_sub.subscribe()  # join_leave not asked for: pushed anyway
        assert (await ann_events.next("join")).info.user == "bob"
        await sub.unsubscribe()
        with pytest.raises(ReplyError) as info:  # no longer a subscriber
            await ann.publish("team:1", 2)
        assert info.value.code == 103
    finally:
        for client in clients:
            await client.disconnect()
