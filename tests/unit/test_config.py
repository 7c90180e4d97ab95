"""`Settings`: defaults, variable names and aliases, precedence, validation, no side effects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pubsocket import ConfigError, Settings


def from_env(env: dict[str, str], env_file: str | Path | None = None) -> Settings:
    return Settings.from_env(environ=env, env_file=env_file)


def test_defaults() -> None:
    s = from_env({})
    assert s == Settings()
    assert (s.host, s.port) == ("127.0.0.1", 7145)
    assert s.api_key is None
    assert s.secret is None
    assert s.log_level == "INFO"
    assert s.broker == "memory://"
    assert s.workers == 1
    assert s.max_message_size == 1024 * 1024
    assert s.max_body_size == 1024 * 1024
    assert s.max_subscriptions == 128
    assert s.max_protocol_errors == 100
    assert s.allowed_origins == ()


@pytest.mark.parametrize(
    ("var", "field", "raw", "expected"),
    [
        ("PUBSOCKET_HOST", "host", "0.0.0.0", "0.0.0.0"),
        ("HOST", "host", "0.0.0.0", "0.0.0.0"),
        ("PUBSOCKET_PORT", "port", "8080", 8080),
        ("PORT", "port", "8080", 8080),
        ("PUBSOCKET_API_KEY", "api_key", "k" * 32, "k" * 32),
        ("API_KEY", "api_key", "k" * 32, "k" * 32),
        ("PUBSOCKET_SECRET", "secret", "s" * 32, "s" * 32),
        ("SECRET", "secret", "s" * 32, "s" * 32),
        ("PUBSOCKET_LOG_LEVEL", "log_level", "warning", "WARNING"),
        ("PUBSOCKET_BROKER", "broker", "redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("PUBSOCKET_WORKERS", "workers", "4", 4),
        ("PUBSOCKET_MAX_MESSAGE_SIZE", "max_message_size", "2048", 2048),
        ("PUBSOCKET_MAX_FRAGMENTS", "max_fragments", "16", 16),
        ("PUBSOCKET_MAX_BODY_SIZE", "max_body_size", "4096", 4096),
        ("PUBSOCKET_HANDSHAKE_TIMEOUT", "handshake_timeout", "2.5", 2.5),
        ("PUBSOCKET_PING_INTERVAL", "ping_interval", "5", 5.0),
        ("PUBSOCKET_PING_TIMEOUT", "ping_timeout", "7.5", 7.5),
        ("PUBSOCKET_MAX_CONNECTIONS", "max_connections", "10", 10),
        ("PUBSOCKET_MAX_SUBSCRIPTIONS", "max_subscriptions", "3", 3),
        ("PUBSOCKET_MAX_PROTOCOL_ERRORS", "max_protocol_errors", "9", 9),
        ("PUBSOCKET_RATE_LIMIT", "rate_limit", "0.5", 0.5),
        ("PUBSOCKET_RATE_BURST", "rate_burst", "12", 12),
        ("PUBSOCKET_OUTBOUND_BUDGET", "outbound_budget", "65536", 65536),
        ("PUBSOCKET_WRITE_TIMEOUT", "write_timeout", "1.25", 1.25),
        ("PUBSOCKET_SHUTDOWN_TIMEOUT", "shutdown_timeout", "3", 3.0),
        ("PUBSOCKET_MAX_FRAME_COMMANDS", "max_frame_commands", "32", 32),
        ("PUBSOCKET_CONNECT_MESSAGE_SIZE", "connect_message_size", "8192", 8192),
        ("PUBSOCKET_CONNECT_TIMEOUT", "connect_timeout", "2.5", 2.5),
    ],
)
def test_each_variable_and_alias(var: str, field: str, raw: str, expected: object) -> None:
    value = getattr(from_env({var: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "level"),
    [("Info", "INFO"), ("Debug", "DEBUG"), ("Warning", "WARNING"), ("Error", "ERROR"),
     ("All", "DEBUG"), ("ALL", "DEBUG"), ("critical", "CRITICAL")],
)
def test_tina4_debug_level_values(raw: str, level: str) -> None:
    assert from_env({"TINA4_DEBUG_LEVEL": raw}).log_level == level


@pytest.mark.parametrize(
    ("primary", "alias", "field", "p_val", "a_val", "expected"),
    [
        ("PUBSOCKET_HOST", "HOST", "host", "10.0.0.1", "10.0.0.2", "10.0.0.1"),
        ("PUBSOCKET_PORT", "PORT", "port", "1111", "2222", 1111),
        ("PUBSOCKET_API_KEY", "API_KEY", "api_key", "p" * 32, "a" * 32, "p" * 32),
        ("PUBSOCKET_SECRET", "SECRET", "secret", "p" * 32, "a" * 32, "p" * 32),
        ("PUBSOCKET_LOG_LEVEL", "TINA4_DEBUG_LEVEL", "log_level", "ERROR", "Debug", "ERROR"),
    ],
)
def test_primary_name_wins_over_alias(
    primary: str, alias: str, field: str, p_val: str, a_val: str, expected: object
) -> None:
    assert getattr(from_env({alias: a_val, primary: p_val}), field) == expected
    assert getattr(from_env({primary: p_val, alias: a_val}), field) == expected


def test_empty_primary_falls_back_to_alias() -> None:
    assert from_env({"PUBSOCKET_PORT": "", "PORT": "9000"}).port == 9000


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=9001\nSECRET=" + "f" * 40 + "\n")
    s = from_env({}, env)
    assert s.port == 9001
    assert s.secret == "f" * 40


def test_process_env_wins_over_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PUBSOCKET_PORT=9001\nAPI_KEY=from-file\nHOST=10.1.1.1\n")
    s = from_env({"PUBSOCKET_PORT": "9002", "API_KEY": "from-env"}, env)
    assert s.port == 9002
    assert s.api_key == "from-env"
    assert s.host == "10.1.1.1"  # not in the process env: the file's value stands


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert from_env({}, tmp_path / "nope.env") == Settings()


def test_default_env_file_is_dotenv_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=9003\n")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env(environ={}).port == 9003


def test_overrides_win_over_everything(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=9001\n")
    s = Settings.from_env(environ={"PORT": "9002"}, env_file=env, port=9004)
    assert s.port == 9004


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("PORT", "eighty"),
        ("PUBSOCKET_PORT", "80.5"),
        ("PUBSOCKET_WORKERS", "two"),
        ("PUBSOCKET_MAX_MESSAGE_SIZE", "1MB"),
        ("PUBSOCKET_RATE_LIMIT", "fast"),
        ("PUBSOCKET_HANDSHAKE_TIMEOUT", "10s"),
        ("PUBSOCKET_RATE_LIMIT", "nan"),
    ],
)
def test_bad_numbers_raise_config_error_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({var: raw})
    assert var in str(info.value)
    assert raw not in str(info.value)


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("PORT", "-1"),
        ("PUBSOCKET_MAX_SUBSCRIPTIONS", "-5"),
        ("PUBSOCKET_RATE_LIMIT", "-0.5"),
        ("PUBSOCKET_WRITE_TIMEOUT", "-1"),
    ],
)
def test_negative_numbers_raise_config_error_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        from_env({var: raw})


@pytest.mark.parametrize("var", ["PORT", "PUBSOCKET_PORT"])
def test_port_above_65535_is_refused(var: str) -> None:
    # an out-of-range port must not reach bind(), which wraps it (70000 -> 4464)
    assert from_env({var: "65535"}).port == 65535
    for raw in ("65536", "70000"):
        with pytest.raises(ConfigError, match=var):
            from_env({var: raw})


def test_bad_number_in_env_file_is_refused(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PUBSOCKET_MAX_CONNECTIONS=lots\n")
    with pytest.raises(ConfigError, match="PUBSOCKET_MAX_CONNECTIONS"):
        from_env({}, env)


@pytest.mark.parametrize(
    "var",
    [
        "PUBSOCKET_MAX_MESSAGE_SIZE", "PUBSOCKET_MAX_FRAGMENTS", "PUBSOCKET_MAX_BODY_SIZE",
        "PUBSOCKET_HANDSHAKE_TIMEOUT", "PUBSOCKET_PING_INTERVAL", "PUBSOCKET_PING_TIMEOUT",
        "PUBSOCKET_MAX_CONNECTIONS", "PUBSOCKET_MAX_SUBSCRIPTIONS",
        "PUBSOCKET_MAX_PROTOCOL_ERRORS", "PUBSOCKET_RATE_LIMIT", "PUBSOCKET_RATE_BURST",
        "PUBSOCKET_OUTBOUND_BUDGET", "PUBSOCKET_WRITE_TIMEOUT", "PUBSOCKET_SHUTDOWN_TIMEOUT",
        "PUBSOCKET_HISTORY_TOPIC_MAX_BYTES", "PUBSOCKET_PUBLISH_BYTE_RATE",
        "PUBSOCKET_PUBLISH_BYTE_BURST",
    ],
)
def test_zero_turns_a_limit_off_and_is_accepted(var: str) -> None:
    s = from_env({var: "0"})
    field = var.removeprefix("PUBSOCKET_").lower()
    assert getattr(s, field) == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example", ("https://a.example",)),
        ("https://a.example,https://b.example", ("https://a.example", "https://b.example")),
        (" https://a.example , ,https://b.example, ", ("https://a.example", "https://b.example")),
        (",", ()),
    ],
)
def test_allowed_origins_parsing(raw: str, expected: tuple[str, ...]) -> None:
    assert from_env({"PUBSOCKET_ALLOWED_ORIGINS": raw}).allowed_origins == expected


def test_from_env_does_not_mutate_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    env.write_text("PUBSOCKET_TEST_ONLY_VAR=1\nPUBSOCKET_PORT=9005\n")
    monkeypatch.delenv("PUBSOCKET_TEST_ONLY_VAR", raising=False)
    monkeypatch.delenv("PUBSOCKET_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    before = dict(os.environ)
    s = Settings.from_env(env_file=env)
    assert s.port == 9005
    assert dict(os.environ) == before


def test_settings_are_immutable_and_with_copies() -> None:
    s = Settings()
    changed = s.with_(port=1)
    assert changed.port == 1
    assert s.port == 7145
    with pytest.raises(AttributeError):
        s.port = 2  # type: ignore[misc]


def test_import_reads_no_env_file_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=not-a-number\nPUBSOCKET_WORKERS=-3\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PUBSOCKET_") and k not in ("PORT", "HOST")}
    done = subprocess.run(
        [sys.executable, "-c",
         "import os, pubsocket, pubsocket.cli, pubsocket.web; print(os.environ.get('PORT'))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"  # .env was not loaded into the environment
    assert done.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_env_files_first_wins_per_variable_and_environment_wins(tmp_path: Path) -> None:
    app_env, cwd_env = tmp_path / "app.env", tmp_path / "cwd.env"
    app_env.write_text("API_KEY=from-app\nPORT=1111\n")
    cwd_env.write_text("API_KEY=from-cwd\nSECRET=from-cwd\nPORT=2222\n")
    settings = Settings.from_env(environ={"PORT": "3333"},
                                 env_files=[app_env, tmp_path / "missing.env", cwd_env])
    assert (settings.api_key, settings.secret, settings.port) == ("from-app", "from-cwd", 3333)
    assert Settings.from_env(environ={}, env_files=[]).api_key is None


def test_env_files_for_names_the_folder_then_the_cwd_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pubsocket.web.project import env_files_for
    monkeypatch.chdir(tmp_path)
    assert env_files_for("proj") == (Path("proj/.env"), Path(".env"))
    assert env_files_for(".") == (Path(".env"),)
    assert env_files_for(tmp_path) == (Path(".env"),)


def test_compression_settings() -> None:
    assert (Settings().compression, Settings().compression_min_size) == ("deflate", 256)
    s = Settings.from_env({"PUBSOCKET_COMPRESSION": "OFF",
                           "PUBSOCKET_COMPRESSION_MIN_SIZE": "0"}, env_file=None)
    assert (s.compression, s.compression_min_size) == ("off", 0)
    with pytest.raises(ConfigError, match="PUBSOCKET_COMPRESSION must be off or deflate"):
        Settings.from_env({"PUBSOCKET_COMPRESSION": "gzip"}, env_file=None)
