"""A Centrifugo config file mapped onto `Settings`, and its namespace permissions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pubsocket import Settings
from pubsocket.auth import Action, Principal
from pubsocket.auth.namespaces import NamespacePolicy
from pubsocket.brokers.base import NO_HISTORY, HistoryPolicy
from pubsocket.centrifugo_config import ChannelOptions, duration, settings_from
from pubsocket.errors import ConfigError, ErrorCode
from pubsocket.hub import Hub
from pubsocket.hub.presence import PresenceHooks

CONFIG = {
    "client": {"token": {"hmac_secret_key": "s3cret", "rsa_public_key": ""},
               "allowed_origins": ["https://app.example.com"],
               "allow_anonymous_connect_without_token": True},
    "http_api": {"key": "api-k", "insecure": False},
    "channel": {
        "without_namespace": {"presence": True, "history_size": 10, "history_ttl": "5m",
                              "allow_subscribe_for_client": True},
        "namespaces": [
            {"name": "chat", "presence": True, "join_leave": True, "history_size": 50,
             "history_ttl": "1h30m", "allow_publish_for_subscriber": True,
             "allow_history_for_subscriber": True, "allow_presence_for_subscriber": True,
             "allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True,
             "force_recovery": True},
            {"name": "private", "allow_history_for_client": True},
        ],
        "proxy": {},
    },
    "log": {"level": "info"},
}


def test_the_documented_keys_map_and_the_rest_are_named() -> None:
    values, ignored = settings_from(CONFIG)
    assert values["secret"] == "s3cret"
    assert values["allowed_origins"] == ("https://app.example.com",)
    assert values["server_api_key"] == "api-k"
    assert (values["history_size"], values["history_ttl"]) == (10, 300.0)
    assert values["history_rules"] == (("chat:*", 50, 5400.0), ("private:*", 0, 0.0))
    assert values["presence"] == ("*", "!private:*")
    assert values["presence_events"] is True
    options = values["channel_options"]
    assert isinstance(options, tuple) and [o.name for o in options] == ["", "chat", "private"]
    assert values["centrifugo_anonymous"] is True
    assert ignored == ["log", "client.token.rsa_public_key", "http_api.insecure",
                       "channel.proxy"]


@pytest.mark.parametrize(("config", "names"), [
    ({"client": {"token": {"hmac_secret_key": 5}}}, "client.token.hmac_secret_key"),
    ({"channel": {"namespaces": [{"name": "x"}]}}, "channel.namespaces[0].name"),
    ({"channel": {"namespaces": [{"name": "ab", "presence": "yes"}]}},
     "channel.namespaces[0].presence"),
    ({"channel": {"without_namespace": {"history_size": 5}}}, "history_ttl"),
    ({"channel": {"without_namespace": {"history_size": 5, "history_ttl": "soon"}}},
     "channel.without_namespace.history_ttl"),
    ({"client": {"allowed_origins": ["https://*.example.com"]}}, "client.allowed_origins"),
    ([1], "JSON object"),
])
def test_a_bad_value_names_its_key(config: object, names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        settings_from(config)


def test_durations() -> None:
    assert duration("300s", "x") == 300.0
    assert duration("1h30m", "x") == 5400.0
    assert duration("250ms", "x") == 0.25
    assert duration(42, "x") == 42.0
    for bad in ("5", "5d", "-1s", True, "1h x"):
        with pytest.raises(ConfigError):
            duration(bad, "x")


def test_from_env_reads_the_file_under_the_environment(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    with caplog.at_level(logging.WARNING, "pubsocket.config"):
        settings = Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path),
                                      "PUBSOCKET_HISTORY_SIZE": "7"}, env_file=None)
    assert settings.secret == "s3cret" and settings.server_api_key == "api-k"
    assert settings.history_size == 7  # the environment wins
    assert "not supported, ignored: log, client.token.rsa_public_key" in caplog.text
    assert "s3cret" not in caplog.text
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(path)}, env_file=None)
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(tmp_path / "missing.json")},
                          env_file=None)


def test_the_hub_takes_history_presence_and_permissions_from_the_file() -> None:
    values, _ = settings_from(CONFIG)
    hub = Hub(Settings().with_(**values))
    assert hub.history_policy("lobby") == HistoryPolicy(10, 300.0)
    assert hub.history_policy("chat:1") == HistoryPolicy(50, 5400.0)
    assert hub.history_policy("private:1") == NO_HISTORY
    assert hub.presence.enabled("lobby") and hub.presence.enabled("chat:1")
    assert not hub.presence.enabled("private:1")
    assert hub.authorizer.namespaces is not None and hub.authorizer.hook is None
    # join/leave only where the namespace has it, though presence is on in both
    assert hub.presence.events_for("chat:1") and not hub.presence.events_for("lobby")
    assert not hub.presence.pushes_all("chat:1")
    assert hub.authorizer.namespaces.recovers("chat:1")
    assert not hub.authorizer.namespaces.recovers("lobby")


def test_presence_exclusions() -> None:
    hooks = PresenceHooks(["*", "!quiet:*"], True)
    assert hooks.enabled("a") and hooks.enabled("loud:1") and not hooks.enabled("quiet:1")
    assert not PresenceHooks(["!quiet:*"], True).enabled("a")  # nothing included


def test_namespace_permissions() -> None:
    values, _ = settings_from(CONFIG)
    policy = NamespacePolicy(values["channel_options"])  # type: ignore[arg-type]
    alice = Principal.from_claims({"sub": "alice"})
    anon = Principal.anonymous()
    key = Principal.from_claims({"sub": "api_key"}, is_api_key=True)
    S, P, H, R = Action.SUBSCRIBE, Action.PUBLISH, Action.HISTORY, Action.PRESENCE
    assert policy(alice, S, "lobby", False) and not policy(anon, S, "lobby", False)
    assert not policy(alice, P, "lobby", True) and not policy(alice, H, "lobby", True)
    # *_for_subscriber: only while subscribed to that channel
    assert policy(alice, S, "chat:1", False) and policy(anon, S, "chat:1", False)
    assert all(policy(alice, a, "chat:1", True) for a in (P, H, R))
    assert not any(policy(alice, a, "chat:1", False) for a in (P, H, R))
    # ... and by a user: no allow_*_for_anonymous in the file
    assert not any(policy(anon, a, "chat:1", True) for a in (P, H, R))
    assert not policy(alice, S, "private:1", False) and policy(alice, H, "private:1", False)
    assert not policy(anon, H, "private:1", False)
    assert not policy(alice, P, "private:1", True)
    assert not policy(alice, S, "unknown:1", False) and not policy(key, P, "unknown:1", False)
    assert all(policy(key, a, "private:1", False) for a in (S, P, H, R))
    # subscribed by a subscription token, which no subscribe rule needs to allow
    only = NamespacePolicy([ChannelOptions("", allow_publish_for_subscriber=True)])
    assert only(alice, P, "x", True) and not only(alice, P, "x", False)
    anonymous = NamespacePolicy([ChannelOptions("", allow_publish_for_client=True,
                                                allow_publish_for_anonymous=True)])
    assert anonymous(anon, P, "x", False)


def test_namespace_refusals_come_before_permissions() -> None:
    values, _ = settings_from(CONFIG)
    policy = NamespacePolicy(values["channel_options"])  # type: ignore[arg-type]
    assert policy.refusal(Action.SUBSCRIBE, "unknown:1") is ErrorCode.INVALID_TOPIC
    assert policy.refusal(Action.PUBLISH, "unknown:1") is ErrorCode.INVALID_TOPIC
    assert policy.refusal(Action.PRESENCE, "private:1") is ErrorCode.PRESENCE_OFF
    assert policy.refusal(Action.HISTORY, "private:1") is ErrorCode.HISTORY_OFF
    assert policy.refusal(Action.HISTORY, "chat:1") is None
    assert policy.refusal(Action.PRESENCE, "lobby") is None
    assert policy.refusal(Action.SUBSCRIBE, "private:1") is None
    pushed = NamespacePolicy([ChannelOptions("", join_leave=True,
                                             force_push_join_leave=True)])
    assert pushed.join_leave("x") and pushed.pushes_join_leave("x")


def test_client_insecure_allows_every_action_on_known_channels() -> None:
    values, ignored = settings_from({"client": {"insecure": True},
                                     "channel": {"namespaces": [{"name": "ns"}]}})
    assert values["centrifugo_insecure"] is True and "client.insecure" not in ignored
    hub = Hub(Settings().with_(**values))
    policy = hub.authorizer.namespaces
    assert policy is not None
    anon = Principal.anonymous()
    assert all(policy(anon, a, "ns:1", False) for a in Action)
    assert not policy(anon, Action.SUBSCRIBE, "other:1", False)  # still unknown: 102
    assert policy.refusal(Action.PRESENCE, "ns:1") is ErrorCode.PRESENCE_OFF
    with pytest.raises(ConfigError, match=r"client\.insecure"):
        settings_from({"client": {"insecure": "yes"}})
