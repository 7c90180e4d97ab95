"""Settings: the one place that reads the environment and `.env`.

Every other module receives a `Settings`; nothing else calls `os.environ`. tina4-style
names (`API_KEY`, `SECRET`, `TINA4_DEBUG_LEVEL`) are accepted as aliases of the
`PUBSOCKET_*` names, and nowhere else: the variables' names and how their text is
parsed are in `envvars` (pure), which only this module uses. For every limit, ``0``
turns it off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from .centrifugo_config import ChannelOptions, settings_from
from .envvars import ENV_NAMES, parse
from .errors import ConfigError

MiB = 1024 * 1024

_ENV_NAMES = ENV_NAMES  # its name here before `envvars` (tests/deploy/test_units.py)


@dataclass(frozen=True, slots=True)
class Settings:
    """Immutable configuration. Build it with `Settings.from_env()` or directly in tests."""

    host: str = "127.0.0.1"
    port: int = 7145
    api_key: str | None = None
    secret: str | None = None
    log_level: str = "INFO"
    broker: str = "memory://"
    workers: int = 1
    max_message_size: int = 1 * MiB
    max_fragments: int = 4096
    max_body_size: int = 1 * MiB
    handshake_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    max_connections: int = 10_000
    max_subscriptions: int = 128
    max_protocol_errors: int = 100
    rate_limit: float = 100.0
    rate_burst: int = 200
    outbound_budget: int = 1 * MiB
    write_timeout: float = 10.0
    # Origins (besides the server's own site) whose pages may open sockets; "*": any
    # (web/origins.py). Empty: same site only; no Origin header (not a browser) is fine.
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    shutdown_timeout: float = 10.0
    # History (docs/protocol.md "Positions and recovery"): per topic, the last
    # `history_size` publications, kept `history_ttl` seconds after the last publish;
    # the position survives `history_meta_ttl`. `history_rules` override per pattern:
    # PUBSOCKET_HISTORY="chat:*=500/600,ticks.*=off" -> (("chat:*", 500, 600.0), ...).
    history_size: int = 100
    history_ttl: float = 120.0
    history_meta_ttl: float = 86_400.0
    history_max_bytes: int = 64 * MiB
    history_rules: tuple[tuple[str, int, float], ...] = field(default_factory=tuple)
    # Brokers (docs/security.md "Brokers"): one topic's history in payload + publisher
    # bytes (memory and Redis alike); the payload bytes one connection may publish per
    # second, in a bucket of `publish_byte_burst` (never less than max_message_size).
    # Under these defaults one connection adds at most ~64 MiB to Redis per minute.
    history_topic_max_bytes: int = 4 * MiB
    publish_byte_rate: float = 1 * MiB
    publish_byte_burst: int = 4 * MiB
    # Presence (docs/protocol.md "Presence"): topic patterns that track who is subscribed
    # (PUBSOCKET_PRESENCE="chat:*,room.*"), whether join/leave events go to subscribers,
    # and how long a node's entries outlive it in Redis (refreshed every ttl/3).
    presence: tuple[str, ...] = field(default_factory=tuple)
    presence_events: bool = True
    presence_ttl: float = 60.0
    # Seconds a pubsocket.v1 connection may stay open past its token's exp to refresh.
    token_grace: float = 5.0
    # Seconds between the application pings (``{}``) sent to Centrifuge clients.
    centrifuge_ping: float = 25.0
    # History and recovery replies (issue 15, area "replies"; docs/protocol.md "Limits"):
    # at most `history_reply_limit` publications and `history_reply_bytes` bytes of
    # payload and publisher per history page (a shorter page the client continues from)
    # or recovery replay (else recovered: false); a history read or recovering
    # subscribe waits while more than `reply_backlog` bytes wait to be sent to the
    # connection (too_many_requests after `write_timeout`), and while the connection
    # has spent more than `history_reply_rate` bytes/s of history replies.
    history_reply_limit: int = 1000
    history_reply_bytes: int = 512 * 1024
    reply_backlog: int = 256 * 1024
    history_reply_rate: int = 4 * MiB
    app_dir: str = "."  # the project folder `pubsocket.asgi:from_env` serves
    # Frames and commands (docs/security.md "Frames and commands"): the commands one
    # frame may carry (counted before parsing; over it: close 1009), and, on an endpoint
    # that authenticates in-band (Centrifuge), the message size allowed until the
    # connect command succeeded and the seconds a connection may stay open without one.
    max_frame_commands: int = 256
    connect_message_size: int = 16 * 1024
    connect_timeout: float = 5.0
    # Heartbeat (issue 19, docs/protocol.md "Heartbeat"): seconds between the
    # ``{"type":"ping"}`` notices sent to every pubsocket.v1 connection, one sweep per
    # hub; clients call a link dead after interval + min(interval, 5) s of silence.
    heartbeat: float = 25.0
    # Unidirectional SSE (issue 19, docs/centrifuge.md "Unidirectional SSE"): at most
    # this many characters of ``cf_connect`` JSON (token and subs) per stream request.
    uni_sse_connect_size: int = 4096
    # Serving and deployment (docs/deploy.md). TLS when both files are set (PEM); one
    # access log line per request and per WebSocket close when `access_log`; liveness
    # and readiness answered at these paths unless an app route takes them ("off" in
    # the environment: not answered); on SIGTERM, readiness answers 503 for
    # `drain_delay` seconds before the connections are closed.
    certfile: str | None = None
    keyfile: str | None = None
    access_log: bool = False
    health_path: str = "/healthz"
    ready_path: str = "/readyz"
    drain_delay: float = 0.0
    # Publishing from elsewhere and the outbox (docs/publishing.md): seconds a publish's
    # idempotency key is remembered by the broker; the outbox relay run inside `serve`
    # when `outbox_dsn` is set (a PostgreSQL DSN), its table, its polling fallback in
    # seconds (LISTEN/NOTIFY wakes it sooner; 0: NOTIFY only) and the rows it publishes
    # per round (0: the default).
    idempotency_ttl: float = 300.0
    outbox_dsn: str | None = None
    outbox_table: str = "pubsocket_outbox"
    outbox_poll: float = 1.0
    outbox_batch: int = 500
    # HTTP (issue 15, docs/security.md "HTTP"): requests/s (and burst) each client may
    # make to routes that need a token (/api/publish, /api/history, ...), keyed by the
    # principal, else the peer address; failed authentications/s (and burst) per peer
    # address before its token routes answer 429 unverified; /metrics without the API key.
    http_rate_limit: float = 100.0
    http_rate_burst: int = 200
    auth_failure_limit: float = 5.0
    auth_failure_burst: int = 20
    metrics_public: bool = False
    # Server API (issue 18, docs/centrifuge.md "Server API"): at most this many commands
    # in one batch (and channels in one broadcast), each charged to the HTTP rate limit;
    # at most this many channels in a `channels` reply (the busiest first).
    server_api_batch_max: int = 100
    server_api_channels_max: int = 10_000
    # The server API's own key (a Centrifugo file's http_api.key); unset: the API key.
    server_api_key: str | None = None
    # The cluster (hub/cluster.py, docs/design.md "Cluster view"), with a shared broker
    # only: every `cluster_info_interval` seconds each node publishes its counts on the
    # control channel, and forgets a node not heard from in 3 intervals (at most
    # `cluster_max_nodes` others are kept); `channels` asks every node and waits at most
    # `cluster_survey_timeout` seconds for the answers. At most `cluster_surveys_max`
    # surveys run at once per node and `cluster_survey_rate` start per second (a request
    # for a pattern already being surveyed shares that survey; past both: error 106).
    cluster_info_interval: float = 3.0
    cluster_survey_timeout: float = 1.0
    cluster_surveys_max: int = 4
    cluster_survey_rate: float = 10.0
    cluster_max_nodes: int = 256
    # A Centrifugo JSON config file (centrifugo_config.py maps it onto these settings;
    # the environment wins over it); `channel_options` are its namespaces (the first:
    # without_namespace), enforced by auth.namespaces.NamespacePolicy. Empty: no file.
    centrifugo_config: str | None = None
    channel_options: tuple[ChannelOptions, ...] = field(default_factory=tuple)
    # The file's client.insecure: every known channel allows every action to anyone.
    centrifugo_insecure: bool = False
    # Subscribe every Centrifuge connection of a user to ``#<user>`` (or
    # ``<personal_channel_namespace>:#<user>``) on the server's word, as Centrifugo's
    # client.subscribe_to_user_personal_channel does (protocols/centrifuge/server_subs.py).
    personal_channel: bool = False
    personal_channel_namespace: str = ""
    # The file's client.token.hmac_secret_key: the tokens of the endpoint the file
    # mounts (web/centrifugo_mount.py), even where SECRET (the app's) differs.
    centrifugo_secret: str | None = None
    # The file's client.allow_anonymous_connect_without_token: its endpoint admits a
    # connection without a token as anonymous (the channel permissions still apply).
    centrifugo_anonymous: bool = False
    # Compression (issue 16, docs/protocol.md "Compression"): permessage-deflate
    # (RFC 7692) on the native server when a client offers it ("deflate") or never
    # ("off"); messages shorter than `compression_min_size` bytes go uncompressed.
    compression: str = "deflate"
    compression_min_size: int = 256

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
        *,
        env_files: Sequence[str | os.PathLike[str]] | None = None,
        **overrides: object,
    ) -> Settings:
        """Read settings from `environ` (default `os.environ`) over `.env` files.

        `env_files` (when given, instead of `env_file`) are read in order and the first
        file that sets a variable wins; missing files are skipped. The process
        environment wins over every file, explicit `overrides` win over all. Raises
        `ConfigError` naming the variable when a value does not parse.
        """
        files = list(env_files) if env_files is not None else (
            [env_file] if env_file is not None else [])
        values: dict[str, str] = {}
        for path in reversed(files):  # later files first, so earlier ones overwrite them
            if Path(path).is_file():
                values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, variables in ENV_NAMES.items():
            for var in variables:
                if var in values and values[var] != "":
                    kwargs[name] = parse(name, var, values[var], str(types[name]))
                    break
        config_file = kwargs.get("centrifugo_config", overrides.get("centrifugo_config"))
        if config_file:  # the file's values, under the environment's
            for name, value in _centrifugo_file(str(config_file)).items():
                kwargs.setdefault(name, value)
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        """A copy with `changes` applied (for tests and the CLI's --host/--port)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _centrifugo_file(path: str) -> dict[str, object]:
    """The settings a Centrifugo config file sets; its ignored keys are logged by name."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"PUBSOCKET_CENTRIFUGO_CONFIG: cannot read {path}: "
                          f"{exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"PUBSOCKET_CENTRIFUGO_CONFIG: {path} is not JSON ({exc})") from None
    try:
        values, ignored = settings_from(data)
    except ConfigError as exc:
        raise ConfigError(f"PUBSOCKET_CENTRIFUGO_CONFIG ({path}): {exc}") from None
    if ignored:
        logging.getLogger("pubsocket.config").warning(
            "%s: not supported, ignored: %s", path, ", ".join(ignored))
    return values
