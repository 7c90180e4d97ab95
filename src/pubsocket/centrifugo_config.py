"""A Centrifugo (v6) JSON config file, mapped onto `Settings` (docs/centrifuge.md "A
Centrifugo config file"). Pure: `config.Settings.from_env` reads the file named by
``PUBSOCKET_CENTRIFUGO_CONFIG`` and hands its parsed JSON here.

Mapped: ``client.token.hmac_secret_key`` -> `secret` and `centrifugo_secret`;
``client.insecure`` -> `centrifugo_insecure`;
``client.allow_anonymous_connect_without_token`` -> `centrifugo_anonymous`;
``client.allowed_origins`` -> `allowed_origins`;
``client.subscribe_to_user_personal_channel`` (``enabled``,
``personal_channel_namespace``) -> `personal_channel`, `personal_channel_namespace`
(``single_connection`` is reported unsupported); ``http_api.key`` -> `server_api_key`;
``channel.without_namespace`` and
``channel.namespaces[]`` -> history (`history_size`/`history_ttl` and `history_rules`),
presence patterns, join/leave events and `channel_options` (the permissions, join/leave
per namespace, forced recovery: read by `auth.namespaces.NamespacePolicy`). Every other
key is returned by name as ignored, so startup can report it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

PERMISSIONS = ("allow_publish_for_subscriber", "allow_publish_for_client",
               "allow_publish_for_anonymous",
               "allow_history_for_subscriber", "allow_history_for_client",
               "allow_history_for_anonymous",
               "allow_presence_for_subscriber", "allow_presence_for_client",
               "allow_presence_for_anonymous",
               "allow_subscribe_for_client", "allow_subscribe_for_anonymous")
_CHANNEL_KEYS = frozenset({"presence", "join_leave", "force_push_join_leave",
                           "force_recovery", "history_size", "history_ttl", *PERMISSIONS})
_NAMESPACE = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")  # Centrifugo's namespace name rule
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """One namespace's options (`name` "" for channels without a namespace)."""

    name: str
    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False
    force_recovery: bool = False
    history_size: int = 0
    history_ttl: float = 0.0
    allow_publish_for_subscriber: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_anonymous: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_client: bool = False
    allow_history_for_anonymous: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_anonymous: bool = False
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False


def duration(value: object, where: str) -> float:
    """Seconds of a Go duration (``"300s"``, ``"1h30m"``, ``"500ms"``) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        parts = _DURATION.findall(value)
        if parts and "".join(n + u for n, u in parts) == value:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ConfigError(f"{where} must be a duration like \"300s\" or \"5m\"")


def _options(name: str, raw: object, where: str, ignored: list[str]) -> ChannelOptions:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in _CHANNEL_KEYS:
            ignored.append(f"{where}.{key}")
        elif key == "history_ttl":
            values[key] = duration(value, f"{where}.{key}")
        elif key == "history_size":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}.{key} must be a non-negative integer")
            values[key] = value
        elif not isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be true or false")
        else:
            values[key] = value
    options = ChannelOptions(name, **values)
    if options.history_size and not options.history_ttl:
        raise ConfigError(f"{where}: history_size needs a history_ttl")
    return options


def _personal(raw: object, ignored: list[str]) -> dict[str, object]:
    """``client.subscribe_to_user_personal_channel`` as settings."""
    where = "client.subscribe_to_user_personal_channel"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    out: dict[str, object] = {}
    for key, value in raw.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.enabled must be true or false")
            out["personal_channel"] = value
        elif key == "personal_channel_namespace":
            if not isinstance(value, str) or (value and not _NAMESPACE.match(value)):
                raise ConfigError(f"{where}.personal_channel_namespace must be a namespace "
                                  "name")
            out["personal_channel_namespace"] = value
        elif not (key == "single_connection" and value is False):  # reported, not enforced
            ignored.append(f"{where}.{key}")
    return out


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be an object")
    return value


def settings_from(data: object) -> tuple[dict[str, object], list[str]]:
    """The `Settings` fields a parsed config file sets, and the keys it ignores (dotted
    paths, in file order). Raises `ConfigError` naming the key of a bad value."""
    if not isinstance(data, Mapping):
        raise ConfigError("the Centrifugo config must be a JSON object")
    out: dict[str, object] = {}
    ignored: list[str] = []
    for key in data:
        if key not in ("client", "http_api", "channel"):
            ignored.append(key)
    client = _section(data, "client", "client")
    for key, value in client.items():
        if key == "token":
            token = _section(client, "token", "client.token")
            for tkey, tvalue in token.items():
                if tkey != "hmac_secret_key":
                    ignored.append(f"client.token.{tkey}")
                elif not isinstance(tvalue, str) or not tvalue:
                    raise ConfigError("client.token.hmac_secret_key must be a string")
                else:  # SECRET in the environment wins for the app; not here
                    out["secret"] = out["centrifugo_secret"] = tvalue
        elif key in ("insecure", "allow_anonymous_connect_without_token"):
            if not isinstance(value, bool):
                raise ConfigError(f"client.{key} must be true or false")
            out["centrifugo_insecure" if key == "insecure" else "centrifugo_anonymous"] = value
        elif key == "allowed_origins":
            if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
                raise ConfigError("client.allowed_origins must be a list of strings")
            if any("*" in o and o != "*" for o in value):
                raise ConfigError("client.allowed_origins: only \"*\" may use a wildcard "
                                  "(list each origin as scheme://host[:port])")
            out["allowed_origins"] = tuple(value)
        elif key == "subscribe_to_user_personal_channel":
            out.update(_personal(value, ignored))
        else:
            ignored.append(f"client.{key}")
    http_api = _section(data, "http_api", "http_api")
    for key, value in http_api.items():
        if key != "key":
            ignored.append(f"http_api.{key}")
        elif not isinstance(value, str):
            raise ConfigError("http_api.key must be a string")
        elif value:
            out["server_api_key"] = value
    channel = _section(data, "channel", "channel")
    options = [_options("", channel.get("without_namespace", {}),
                        "channel.without_namespace", ignored)]
    namespaces = channel.get("namespaces", [])
    if not isinstance(namespaces, list):
        raise ConfigError("channel.namespaces must be a list")
    for i, raw in enumerate(namespaces):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(name, str) or not _NAMESPACE.match(name):
            raise ConfigError(f"channel.namespaces[{i}].name must match [-a-zA-Z0-9_.]{{2,}}")
        if any(o.name == name for o in options):
            raise ConfigError(f"channel.namespaces[{i}]: namespace {name!r} is repeated")
        options.append(_options(name, raw, f"channel.namespaces[{i}]", ignored))
    for key in channel:
        if key not in ("without_namespace", "namespaces"):
            ignored.append(f"channel.{key}")
    out.update(_channel_settings(options))
    return out, ignored


def _channel_settings(options: list[ChannelOptions]) -> dict[str, object]:
    """History, presence and join/leave settings of the namespaces."""
    default, named = options[0], options[1:]
    rules = tuple((f"{o.name}:*", o.history_size, o.history_ttl) for o in named)
    presence = [f"{o.name}:*" for o in named if o.presence]
    if default.presence:  # every channel but the namespaces without presence
        presence = ["*", *(f"!{o.name}:*" for o in named if not o.presence)]
    return {
        "history_size": default.history_size, "history_ttl": default.history_ttl,
        "history_rules": rules, "presence": tuple(presence),
        # on where some namespace has them; which ones: NamespacePolicy.join_leave
        "presence_events": any(o.join_leave for o in options),
        "channel_options": tuple(options),
    }
