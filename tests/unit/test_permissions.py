"""Topic permissions: the `topics` claim, `{sub}` escaping, and the hook rules. Pure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import pytest

from pubsocket.auth import Action, Authorizer, Principal, compile_topics
from pubsocket.auth.permissions import MAX_PATTERNS, escape_glob

SUB, PUB, PRES, HIST = Action.SUBSCRIBE, Action.PUBLISH, Action.PRESENCE, Action.HISTORY


def principal(claims: dict[str, Any] | None = None) -> Principal:
    return Principal.from_claims(claims or {})


def decide(authorizer: Authorizer, p: Principal, action: Action, topic: str) -> bool:
    result = authorizer.check(p, action, topic)
    return result if isinstance(result, bool) else asyncio.run(_await(result))


async def _await(result: Awaitable[bool]) -> bool:
    return await result


# -- the claim ---------------------------------------------------------------------------
def test_glob_semantics_are_fnmatchcase() -> None:
    rules = compile_topics({"subscribe": ["chat:*", "room.?", "news:[ab]", "x:[!0-9]"]}, "u")
    assert rules.allows(SUB, "chat:general")
    assert rules.allows(SUB, "chat:a:b/c")  # "*" crosses ":" and "/"
    assert rules.allows(SUB, "chat:")  # "*" matches the empty string
    assert not rules.allows(SUB, "Chat:general")  # case-sensitive on every OS
    assert not rules.allows(SUB, "xchat:general")  # the whole topic must match
    assert rules.allows(SUB, "room.1") and not rules.allows(SUB, "room.12")
    assert rules.allows(SUB, "news:a") and not rules.allows(SUB, "news:c")
    assert rules.allows(SUB, "x:a") and not rules.allows(SUB, "x:1")


def test_a_present_claim_limits_every_action() -> None:
    rules = compile_topics({"subscribe": ["*"], "publish": []}, "u")
    assert rules.allows(SUB, "anything")
    assert not rules.allows(PUB, "anything")  # an empty list allows nothing
    assert not rules.allows(PRES, "anything")  # an action not named is denied
    assert not rules.allows(HIST, "anything")


def test_sub_placeholder_makes_personal_topics() -> None:
    rules = compile_topics({"subscribe": ["user:{sub}", "user:{sub}:*"]}, "alice")
    assert rules.allows(SUB, "user:alice") and rules.allows(SUB, "user:alice:inbox")
    assert not rules.allows(SUB, "user:bob") and not rules.allows(SUB, "user:alicex")


@pytest.mark.parametrize("sub", ["*", "a*", "?", "[a-z]*", "[", "]", "{sub}", "a.b", "",
                                 "bob:x", "bob/x", "bob.x", ":", "a b"])
def test_a_sub_that_is_not_one_segment_gets_nothing_from_sub_patterns(sub: str) -> None:
    rules = compile_topics({"publish": ["user:{sub}", "user:{sub}:*", "open"]}, sub)
    for other in ("user:bob", "user:", "user:ab", "user:a", "user:z", "user:axb",
                  f"user:{sub}", f"user:{sub}:x", "user:bob:x", "user:bob:x:y"):
        assert not rules.allows(PUB, other), (sub, other)
    assert rules.allows(PUB, "open")  # patterns without {sub} are unaffected


def test_sub_cannot_reach_into_a_longer_sub_across_a_separator() -> None:
    # `bob` must not read the private topics of the user `bob:x` (nor `bob.x`, `bob/x`):
    # such subs get nothing from {sub}, and `bob`'s own segment is exactly `bob`.
    claim = {"subscribe": ["private:{sub}", "private:{sub}:*", "p.{sub}.*", "p/{sub}/*"]}
    bob = compile_topics(claim, "bob")
    assert bob.allows(SUB, "private:bob") and bob.allows(SUB, "private:bob:inbox")
    assert bob.allows(SUB, "p.bob.inbox") and bob.allows(SUB, "p/bob/inbox")
    for victim in ("bob:x", "bob.x", "bob/x"):
        assert not compile_topics(claim, victim).allows(SUB, f"private:{victim}:inbox")
    assert not bob.allows(SUB, "private:bobby:inbox") and not bob.allows(SUB, "p.bobx.y")
    alice = compile_topics(claim, "alice@example-1_2")  # every segment character is fine
    assert alice.allows(SUB, "private:alice@example-1_2:inbox")


def test_sub_must_be_a_whole_segment_of_the_pattern() -> None:
    # "user:{sub}*" would let `bob` match `bob`-prefixed users' topics: malformed, and a
    # malformed claim denies everything.
    for pattern in ("user:{sub}*", "user{sub}", "inbox-{sub}", "{sub}x", "a:{sub}?",
                    "[{sub}]"):
        rules = compile_topics({"subscribe": [pattern, "public"]}, "bob")
        assert not rules.allows(SUB, "public"), pattern
    for pattern in ("{sub}", "{sub}:x", "x.{sub}", "a/{sub}/b", "*:{sub}", "{sub}:{sub}"):
        rules = compile_topics({"subscribe": [pattern]}, "bob")
        assert rules.allows(SUB, pattern.replace("{sub}", "bob").replace("*", "any")), pattern


def test_escape_glob() -> None:
    assert escape_glob("a*b?c[d]") == "a[*]b[?]c[[]d]"


def test_sub_placeholder_without_a_sub_matches_nothing() -> None:
    rules = compile_topics({"subscribe": ["user:{sub}", "public"]}, None)
    assert not rules.allows(SUB, "user:{sub}") and not rules.allows(SUB, "user:")
    assert rules.allows(SUB, "public")


@pytest.mark.parametrize("claim", [
    ["chat:*"],  # not a mapping
    "chat:*",
    {"subcribe": ["chat:*"]},  # unknown action (typo): strict
    {"subscribe": "chat:*"},  # not a list
    {"subscribe": ["chat:*", 3]},  # not a string
    {"subscribe": [""]},  # empty pattern
    {"subscribe": ["x" * 2000]},  # too long
    {"subscribe": ["a"] * (MAX_PATTERNS + 1)},  # too many
    {1: ["chat:*"]},
])
def test_malformed_claim_denies_everything_and_is_logged(
    claim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pubsocket.auth"):
        rules = compile_topics(claim, "u")
    assert "malformed 'topics' claim" in caplog.text
    for action in Action:
        assert not rules.allows(action, "chat:x")
        assert not rules.allows(action, "a")


def test_principal_compiles_the_claim_once() -> None:
    assert principal({"sub": "u"}).rules is None  # no claim: no limit from claims
    p = principal({"sub": "u", "topics": {"publish": ["user:{sub}"]}})
    assert p.rules is not None and p.rules.allows(PUB, "user:u")


# -- the Authorizer ----------------------------------------------------------------------
def test_neither_claim_nor_hook_allows_everything_synchronously() -> None:
    authorizer = Authorizer()
    for p in (principal({"sub": "u"}), Principal.anonymous()):
        for action in Action:
            assert authorizer.check(p, action, "any:topic") is True


def test_claim_alone_decides_synchronously() -> None:
    p = principal({"sub": "u", "topics": {"subscribe": ["chat:*"]}})
    assert Authorizer().check(p, SUB, "chat:1") is True
    assert Authorizer().check(p, SUB, "other") is False


def test_claim_denial_skips_the_hook() -> None:
    calls: list[tuple[str, str]] = []

    def hook(p: Principal, action: Action, topic: str) -> bool:
        calls.append((action, topic))
        return True

    p = principal({"sub": "u", "topics": {"subscribe": ["chat:*"]}})
    authorizer = Authorizer(hook)
    assert authorizer.check(p, SUB, "secret") is False
    assert calls == []
    assert authorizer.check(p, SUB, "chat:1") is True  # the claim allowed: the hook decides
    assert calls == [("subscribe", "chat:1")]


def test_sync_hook_decides_and_sees_principal_action_topic() -> None:
    seen: list[tuple[str | None, Action, str]] = []

    def hook(p: Principal, action: Action, topic: str) -> bool:
        seen.append((p.sub, action, topic))
        return action == "subscribe"  # Action is a str

    authorizer = Authorizer(hook)
    p = principal({"sub": "u"})
    assert authorizer.check(p, SUB, "t") is True
    assert authorizer.check(p, PUB, "t") is False
    assert seen == [("u", SUB, "t"), ("u", PUB, "t")]
    assert isinstance(seen[0][1], Action)


def test_async_hook_returns_an_awaitable() -> None:
    async def hook(p: Principal, action: Action, topic: str) -> bool:
        await asyncio.sleep(0)
        return topic.startswith("ok")

    authorizer = Authorizer(hook)
    p = principal({"sub": "u"})
    pending = authorizer.check(p, SUB, "ok:1")
    assert not isinstance(pending, bool)
    assert asyncio.run(_await(pending)) is True
    assert decide(authorizer, p, SUB, "no") is False
    assert asyncio.run(authorizer.allowed(p, SUB, "ok:2")) is True
    assert asyncio.run(Authorizer().allowed(p, SUB, "x")) is True


def test_raising_hook_denies_and_logs_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def hook(p: Principal, action: Action, topic: str) -> bool:
        raise RuntimeError("database password is hunter2")

    async def ahook(p: Principal, action: Action, topic: str) -> bool:
        raise KeyError("async internals")

    p = principal({"sub": "u"})
    with caplog.at_level(logging.ERROR, logger="pubsocket.auth"):
        assert Authorizer(hook).check(p, PUB, "t") is False
        assert decide(Authorizer(ahook), p, PUB, "t") is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)
    assert "hunter2" in (errors[0].exc_text or "")  # logged for operators, never sent


@pytest.mark.parametrize("result", [None, 1, "yes", [True]])
def test_hook_must_return_a_bool(result: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def ahook(p: Principal, action: Action, topic: str) -> Any:
        return result

    p = principal({"sub": "u"})
    assert Authorizer(lambda *_: result).check(p, SUB, "t") is False
    assert decide(Authorizer(ahook), p, SUB, "t") is False
    assert "not bool" in caplog.text


def test_api_key_principal_is_limited_only_by_the_hook() -> None:
    from pubsocket.auth import Authenticator
    from tests.conftest import API_KEY

    p = Authenticator(API_KEY, None).authenticate([f"Bearer {API_KEY}"])
    assert p.is_api_key and p.sub == "api_key" and p.rules is None
    assert Authorizer().check(p, PUB, "anything") is True
    assert Authorizer(lambda p, a, t: not p.is_api_key).check(p, PUB, "x") is False
