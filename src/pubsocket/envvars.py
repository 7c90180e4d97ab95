"""The environment variables `Settings.from_env` reads: each setting's names and how its
text becomes a value.

Pure: `config.py` reads the environment and the `.env` files (the only module that
does) and hands each raw string to `parse`. `ENV_NAMES` maps every settable field to
its ``PUBSOCKET_*`` variable and, for a few, the tina4-style aliases (`API_KEY`,
`SECRET`, `TINA4_DEBUG_LEVEL`, ...), which are accepted here and nowhere else. Numbers
must be finite and not negative (``0`` turns a limit off); a value that does not parse
raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import math

from .errors import ConfigError

# (field name, primary variable, aliases). Order matters only for error messages.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "host": ("PUBSOCKET_HOST", "HOST"),
    "port": ("PUBSOCKET_PORT", "PORT"),
    "api_key": ("PUBSOCKET_API_KEY", "API_KEY"),
    "secret": ("PUBSOCKET_SECRET", "SECRET"),
    "log_level": ("PUBSOCKET_LOG_LEVEL", "TINA4_DEBUG_LEVEL"),
    "broker": ("PUBSOCKET_BROKER",),
    "workers": ("PUBSOCKET_WORKERS",),
    "max_message_size": ("PUBSOCKET_MAX_MESSAGE_SIZE",),
    "max_fragments": ("PUBSOCKET_MAX_FRAGMENTS",),
    "max_body_size": ("PUBSOCKET_MAX_BODY_SIZE",),
    "handshake_timeout": ("PUBSOCKET_HANDSHAKE_TIMEOUT",),
    "ping_interval": ("PUBSOCKET_PING_INTERVAL",),
    "ping_timeout": ("PUBSOCKET_PING_TIMEOUT",),
    "max_connections": ("PUBSOCKET_MAX_CONNECTIONS",),
    "max_subscriptions": ("PUBSOCKET_MAX_SUBSCRIPTIONS",),
    "max_protocol_errors": ("PUBSOCKET_MAX_PROTOCOL_ERRORS",),
    "rate_limit": ("PUBSOCKET_RATE_LIMIT",),
    "rate_burst": ("PUBSOCKET_RATE_BURST",),
    "outbound_budget": ("PUBSOCKET_OUTBOUND_BUDGET",),
    "write_timeout": ("PUBSOCKET_WRITE_TIMEOUT",),
    "allowed_origins": ("PUBSOCKET_ALLOWED_ORIGINS",),
    "shutdown_timeout": ("PUBSOCKET_SHUTDOWN_TIMEOUT",),
    "history_size": ("PUBSOCKET_HISTORY_SIZE",),
    "history_ttl": ("PUBSOCKET_HISTORY_TTL",),
    "history_meta_ttl": ("PUBSOCKET_HISTORY_META_TTL",),
    "history_max_bytes": ("PUBSOCKET_HISTORY_MAX_BYTES",),
    "history_rules": ("PUBSOCKET_HISTORY",),
    # Brokers: what one client can make them keep (docs/security.md "Brokers").
    "history_topic_max_bytes": ("PUBSOCKET_HISTORY_TOPIC_MAX_BYTES",),
    "publish_byte_rate": ("PUBSOCKET_PUBLISH_BYTE_RATE",),
    "publish_byte_burst": ("PUBSOCKET_PUBLISH_BYTE_BURST",),
    "presence": ("PUBSOCKET_PRESENCE",),
    "presence_events": ("PUBSOCKET_PRESENCE_EVENTS",),
    "presence_ttl": ("PUBSOCKET_PRESENCE_TTL",),
    "token_grace": ("PUBSOCKET_TOKEN_GRACE",),
    "centrifuge_ping": ("PUBSOCKET_CENTRIFUGE_PING",),
    # History and recovery replies (issue 15, area "replies").
    "history_reply_limit": ("PUBSOCKET_HISTORY_REPLY_LIMIT",),
    "history_reply_bytes": ("PUBSOCKET_HISTORY_REPLY_BYTES",),
    "reply_backlog": ("PUBSOCKET_REPLY_BACKLOG",),
    "history_reply_rate": ("PUBSOCKET_HISTORY_REPLY_RATE",),
    "app_dir": ("PUBSOCKET_APP",),
    # frames and commands (issue 15: bounded inbound work per frame and before connect)
    "max_frame_commands": ("PUBSOCKET_MAX_FRAME_COMMANDS",),
    "connect_message_size": ("PUBSOCKET_CONNECT_MESSAGE_SIZE",),
    "connect_timeout": ("PUBSOCKET_CONNECT_TIMEOUT",),
    # heartbeat (issue 19): pubsocket.v1 application pings, so clients notice dead links
    "heartbeat": ("PUBSOCKET_HEARTBEAT",),
    # uni_sse (issue 19): the size of a unidirectional SSE connect request
    "uni_sse_connect_size": ("PUBSOCKET_UNI_SSE_CONNECT_SIZE",),
    # Serving and deployment (issue 17, scaffold): TLS, the access log, the health
    # endpoints and the drain before a shutdown (docs/deploy.md).
    "certfile": ("PUBSOCKET_CERTFILE",),
    "keyfile": ("PUBSOCKET_KEYFILE",),
    "access_log": ("PUBSOCKET_ACCESS_LOG",),
    "health_path": ("PUBSOCKET_HEALTH_PATH",),
    "ready_path": ("PUBSOCKET_READY_PATH",),
    "drain_delay": ("PUBSOCKET_DRAIN_DELAY",),
    # Publishing from elsewhere and the outbox (publisher.py, outbox/).
    "idempotency_ttl": ("PUBSOCKET_IDEMPOTENCY_TTL",),
    "outbox_dsn": ("PUBSOCKET_OUTBOX_DSN",),
    "outbox_table": ("PUBSOCKET_OUTBOX_TABLE",),
    "outbox_poll": ("PUBSOCKET_OUTBOX_POLL",),
    "outbox_batch": ("PUBSOCKET_OUTBOX_BATCH",),
    # HTTP (issue 15): per-client request budget, failed-auth budget, /metrics access
    "http_rate_limit": ("PUBSOCKET_HTTP_RATE_LIMIT",),
    "http_rate_burst": ("PUBSOCKET_HTTP_RATE_BURST",),
    "auth_failure_limit": ("PUBSOCKET_AUTH_FAILURE_LIMIT",),
    "auth_failure_burst": ("PUBSOCKET_AUTH_FAILURE_BURST",),
    # Server API (issue 18, ops): commands per batch / channels per broadcast; channels
    # per `channels` reply.
    "server_api_batch_max": ("PUBSOCKET_SERVER_API_BATCH_MAX",),
    "server_api_channels_max": ("PUBSOCKET_SERVER_API_CHANNELS_MAX",),
    "server_api_key": ("PUBSOCKET_SERVER_API_KEY",),
    # The cluster view of `info` and `channels` (hub/cluster.py).
    "cluster_info_interval": ("PUBSOCKET_CLUSTER_INFO_INTERVAL",),
    "cluster_survey_timeout": ("PUBSOCKET_CLUSTER_SURVEY_TIMEOUT",),
    "cluster_surveys_max": ("PUBSOCKET_CLUSTER_SURVEYS_MAX",),
    "cluster_survey_rate": ("PUBSOCKET_CLUSTER_SURVEY_RATE",),
    "cluster_max_nodes": ("PUBSOCKET_CLUSTER_MAX_NODES",),
    "centrifugo_config": ("PUBSOCKET_CENTRIFUGO_CONFIG",),
    # Server-side subscriptions (issue 18): each Centrifuge connection of a user to its
    # personal channel ``#<user>`` (``<namespace>:#<user>``).
    "personal_channel": ("PUBSOCKET_PERSONAL_CHANNEL",),
    "personal_channel_namespace": ("PUBSOCKET_PERSONAL_CHANNEL_NAMESPACE",),
    "metrics_public": ("PUBSOCKET_METRICS_PUBLIC",),
    # Compression (issue 16, area "deflate"): permessage-deflate on the native server.
    "compression": ("PUBSOCKET_COMPRESSION",),
    "compression_min_size": ("PUBSOCKET_COMPRESSION_MIN_SIZE",),
}

_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}

# tina4's TINA4_DEBUG_LEVEL values, mapped to logging level names.
_TINA4_LEVELS = {
    "all": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
}


def parse(name: str, var: str, raw: str, type_name: str) -> object:
    """The value of the field `name` from `raw`, the text of the variable `var`;
    `type_name` is the field's annotation as a string (``"int"``, ``"float"``,
    ``"bool"``, ``"str | None"``, ...). Raises `ConfigError` naming `var`."""
    try:
        if name == "log_level":
            return _TINA4_LEVELS.get(raw.strip().lower(), raw.strip().upper())
        if name == "allowed_origins":
            return tuple(o.strip() for o in raw.split(",") if o.strip())
        if name == "history_rules":
            return _history_rules(var, raw)
        if name == "presence":
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if name == "compression":
            mode = raw.strip().lower()
            if mode not in ("off", "deflate"):
                raise ConfigError(f"{var} must be off or deflate")
            return mode
        if name in ("health_path", "ready_path"):
            path = raw.strip()
            if path.lower() == "off":
                return ""
            if not path.startswith("/"):
                raise ConfigError(f"{var} must be a path starting with / (or off)")
            return path
        if type_name.startswith("bool"):
            if raw.strip().lower() not in _BOOLS:
                raise ConfigError(f"{var} must be true or false")
            return _BOOLS[raw.strip().lower()]
        if type_name.startswith("int"):
            value: object = int(raw)
        elif type_name.startswith("float"):
            value = float(raw)
        else:
            return raw
    except ValueError:
        raise ConfigError(f"{var} must be a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{var} must be a finite number")
    if isinstance(value, int | float) and value < 0:
        raise ConfigError(f"{var} must not be negative")
    if name == "port" and isinstance(value, int) and value > 65535:
        raise ConfigError(f"{var} must be at most 65535")
    return value


def _history_rules(var: str, raw: str) -> tuple[tuple[str, int, float], ...]:
    """``pattern=SIZE/TTL`` or ``pattern=off``, comma-separated (TTL in seconds)."""
    rules = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        pattern, sep, spec = item.partition("=")
        pattern, spec = pattern.strip(), spec.strip().lower()
        if not sep or not pattern:
            raise ConfigError(f"{var}: expected pattern=SIZE/TTL or pattern=off, got {item!r}")
        if spec == "off":
            rules.append((pattern, 0, 0.0))
            continue
        size, _, ttl = spec.partition("/")
        try:
            rule = (pattern, int(size), float(ttl.rstrip("s")) if ttl else 120.0)
        except ValueError:
            raise ConfigError(f"{var}: SIZE/TTL must be numbers in {item!r}") from None
        if rule[1] < 0 or not math.isfinite(rule[2]) or rule[2] < 0:
            raise ConfigError(f"{var}: SIZE and TTL must not be negative in {item!r}")
        rules.append(rule)
    return tuple(rules)


__all__ = ["ENV_NAMES", "parse"]
