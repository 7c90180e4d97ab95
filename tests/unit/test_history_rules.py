"""`HistoryRules` (which policy a topic gets) and ``PUBSOCKET_HISTORY`` in `Settings`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubsocket import ConfigError, Settings
from pubsocket.brokers import NO_HISTORY, HistoryPolicy
from pubsocket.hub import policy as policy_module
from pubsocket.hub.policy import HistoryRules

DEFAULT = HistoryPolicy(100, 120.0)


def from_env(value: str, tmp_path: Path) -> Settings:
    return Settings.from_env({"PUBSOCKET_HISTORY": value}, env_file=tmp_path / "none.env")


# -- HistoryRules --------------------------------------------------------------------------


def test_no_rule_gives_the_default() -> None:
    rules = HistoryRules(DEFAULT)
    assert rules.policy("anything") == DEFAULT


def test_first_matching_rule_wins() -> None:
    a, b = HistoryPolicy(5, 10.0), HistoryPolicy(7, 20.0)
    rules = HistoryRules(DEFAULT, [("chat:*", a), ("chat:vip*", b), ("*", NO_HISTORY)])
    assert rules.policy("chat:vip1") == a
    assert rules.policy("chat:x") == a
    assert rules.policy("other") == NO_HISTORY
    rules = HistoryRules(DEFAULT, [("chat:vip*", b), ("chat:*", a)])
    assert rules.policy("chat:vip1") == b
    assert rules.policy("chat:x") == a
    assert rules.policy("news") == DEFAULT


def test_globs_cross_separators_and_are_case_sensitive() -> None:
    a = HistoryPolicy(3, 1.0)
    rules = HistoryRules(DEFAULT, [("a*", a), ("x?z", NO_HISTORY)])
    assert rules.policy("a/b:c@d") == a
    assert rules.policy("A") == DEFAULT
    assert rules.policy("xyz") == NO_HISTORY
    assert rules.policy("xyyz") == DEFAULT


def test_off_means_no_history() -> None:
    rules = HistoryRules(DEFAULT)
    rules.prepend({"ticks.*": None})
    assert rules.policy("ticks.eur") == NO_HISTORY
    assert not rules.policy("ticks.eur").enabled
    assert rules.policy("chat") == DEFAULT


def test_prepended_app_rules_win_over_settings_rules_and_clear_the_cache() -> None:
    rules = HistoryRules.from_settings(Settings(history_rules=(("chat:*", 500, 600.0),)))
    assert rules.policy("chat:1") == HistoryPolicy(500, 600.0)  # cached now
    rules.prepend({"chat:1": HistoryPolicy(2, 3.0)})
    assert rules.policy("chat:1") == HistoryPolicy(2, 3.0)
    assert rules.policy("chat:2") == HistoryPolicy(500, 600.0)


def test_from_settings_default_and_off() -> None:
    assert HistoryRules.from_settings(Settings()).policy("t") == DEFAULT
    assert HistoryRules.from_settings(Settings(history_size=7, history_ttl=9.0)).policy("t") \
        == HistoryPolicy(7, 9.0)
    assert not HistoryRules.from_settings(Settings(history_size=0)).policy("t").enabled
    rules = HistoryRules.from_settings(Settings(history_rules=(("t*", 0, 0.0),)))
    assert rules.policy("t1") == NO_HISTORY


def test_the_cache_is_bounded_and_answers_stay_right() -> None:
    a = HistoryPolicy(1, 1.0)
    rules = HistoryRules(DEFAULT, [("a*", a)])
    cap = policy_module._CACHE_SIZE
    for i in range(cap * 2 + 5):
        assert rules.policy(f"a{i}" if i % 2 else f"b{i}") == (a if i % 2 else DEFAULT)
        assert len(rules._cache) <= cap
    assert rules.policy("a1") == a
    assert rules.policy("b0") == DEFAULT


# -- PUBSOCKET_HISTORY ------------------------------------------------------------------------


def test_env_rules_parse(tmp_path: Path) -> None:
    s = from_env("chat:*=500/600,ticks.*=off", tmp_path)
    assert s.history_rules == (("chat:*", 500, 600.0), ("ticks.*", 0, 0.0))


@pytest.mark.parametrize(("value", "rules"), [
    ("a=5", (("a", 5, 120.0),)),  # TTL defaults to 120 s
    ("a=5/30s", (("a", 5, 30.0),)),
    ("a=5/0.5", (("a", 5, 0.5),)),
    (" a = 5/30 , b=OFF ,", (("a", 5, 30.0), ("b", 0, 0.0))),
    ("a=0/10", (("a", 0, 10.0),)),
    ("", ()),
])
def test_env_rule_forms(tmp_path: Path, value: str, rules: tuple[object, ...]) -> None:
    assert from_env(value, tmp_path).history_rules == rules


def test_env_rules_drive_the_hub_policy(tmp_path: Path) -> None:
    s = from_env("chat:*=500/600,ticks.*=off", tmp_path)
    rules = HistoryRules.from_settings(s)
    assert rules.policy("chat:lobby") == HistoryPolicy(500, 600.0)
    assert rules.policy("ticks.eur") == NO_HISTORY
    assert rules.policy("other") == DEFAULT


@pytest.mark.parametrize("value", [
    "chat:*", "=5/10", "chat:*=", "chat:*=lots", "chat:*=5/soon", "chat:*=-1/10",
    "chat:*=5/-1", "chat:*=5/inf", "chat:*=5/nan", "a=5,b", "a=1.5/10",
])
def test_env_invalid_rules_raise_config_error_naming_the_variable(tmp_path: Path,
                                                                  value: str) -> None:
    with pytest.raises(ConfigError, match="PUBSOCKET_HISTORY"):
        from_env(value, tmp_path)


@pytest.mark.parametrize(("var", "value"), [
    ("PUBSOCKET_HISTORY_SIZE", "-1"), ("PUBSOCKET_HISTORY_SIZE", "ten"),
    ("PUBSOCKET_HISTORY_TTL", "inf"), ("PUBSOCKET_HISTORY_META_TTL", "x"),
    ("PUBSOCKET_HISTORY_MAX_BYTES", "-5"),
])
def test_env_invalid_history_numbers_name_the_variable(tmp_path: Path, var: str,
                                                       value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value}, env_file=tmp_path / "none.env")


def test_env_history_numbers(tmp_path: Path) -> None:
    s = Settings.from_env({"PUBSOCKET_HISTORY_SIZE": "5", "PUBSOCKET_HISTORY_TTL": "1.5",
                           "PUBSOCKET_HISTORY_META_TTL": "60",
                           "PUBSOCKET_HISTORY_MAX_BYTES": "1024"},
                          env_file=tmp_path / "none.env")
    assert (s.history_size, s.history_ttl, s.history_meta_ttl, s.history_max_bytes) == \
        (5, 1.5, 60.0, 1024)
    d = Settings()
    assert (d.history_size, d.history_ttl, d.history_rules) == (100, 120.0, ())
