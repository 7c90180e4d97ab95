"""Per-topic permissions: the ``topics`` claim and the app's ``authorize`` hook. No I/O.

Two sources combine, in this order (docs/auth-presence-draft.md):

1. The token's ``topics`` claim, compiled once per connection into `TopicRules`. It maps
   each `Action` to a list of glob patterns; ``{sub}`` in a pattern is replaced by the
   token's ``sub`` (the rule below).
   A claim that is present limits *every* action: an action it does not name is denied.
   A malformed claim denies everything and is logged (fail closed). No claim: no limit.
2. A Centrifugo config file's namespaces (`auth.namespaces.NamespacePolicy`, when the
   file is set), asked only when the claim allowed; they see whether the connection is
   subscribed to the topic (``*_for_subscriber``).
3. The app hook ``authorize(principal, action, topic) -> bool | Awaitable[bool]``, asked
   only when the claim and the namespaces allowed. Only ``True`` allows; a hook that
   raises (or returns something else) denies and is logged. Its exception text never
   reaches a client.

With neither source, everything is allowed. A denial is reported to clients as the error
code `FORBIDDEN` by the hub.

Glob semantics are `fnmatch.fnmatchcase` (case-sensitive on every OS): ``*`` matches any
run of characters *including* ``:`` and ``/``, ``?`` one character, ``[seq]`` / ``[!seq]``
a character class. There is no backslash escape; ``[*]`` is a literal ``*``.

``{sub}`` is one whole topic segment, owned by one user. So that no user's pattern
reaches into another's segment (``bob`` must not match ``private:bob:x:*``, meant for
the user ``bob:x``): a pattern may hold ``{sub}`` only between its start or a separator
(``:`` ``.`` ``/``) and a separator or its end (else the claim is malformed), and it is
substituted only for a ``sub`` of segment characters (`SUB_SEGMENT`: letters, digits,
``_`` ``@`` ``-``). Any other ``sub`` (holding a separator, a glob character, or empty)
makes every ``{sub}`` pattern match nothing: then the substituted segment of a topic is
exactly the ``sub``, bounded by separators that no ``sub`` contains.
"""

from __future__ import annotations

import enum
import fnmatch
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import ErrorCode
    from .namespaces import NamespacePolicy
    from .principal import Principal

log = logging.getLogger("pubsocket.auth")

FORBIDDEN = "forbidden"  # the error code a refused command gets
SUB_PLACEHOLDER = "{sub}"
MAX_PATTERNS = 256  # per action: bounds the compile cost of one connection
MAX_PATTERN_LENGTH = 1024
SEPARATORS = ":./"  # what splits a topic into segments
SUB_SEGMENT = re.compile(r"[A-Za-z0-9_@\-]+")  # a `sub` that `{sub}` may stand for
# `{sub}` with something other than the pattern's start, its end or a separator beside it.
_SUB_NOT_A_SEGMENT = re.compile(r"[^:./]\{sub\}|\{sub\}[^:./]")


class Action(enum.StrEnum):
    """What a principal wants to do with a topic. A `str`, so ``action == "publish"`` works."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    PRESENCE = "presence"
    HISTORY = "history"


AuthorizeHook = Callable[["Principal", Action, str], "bool | Awaitable[bool]"]
_Matcher = Callable[[str], "re.Match[str] | None"]
_ACTIONS = {a.value: a for a in Action}


def escape_glob(text: str) -> str:
    """`text` as a glob that matches exactly `text` (``*``, ``?`` and ``[`` bracketed)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


class MalformedClaim(ValueError):
    """The ``topics`` claim does not have the documented shape (the message says how)."""


class TopicRules:
    """A compiled ``topics`` claim: `allows(action, topic)` in one regex match per call."""

    __slots__ = ("_matchers",)

    def __init__(self, matchers: Mapping[Action, _Matcher]) -> None:
        self._matchers = dict(matchers)  # an action without a matcher is denied

    @classmethod
    def deny_all(cls) -> TopicRules:
        """Rules that allow nothing (what a malformed claim compiles to)."""
        return cls({})

    def allows(self, action: Action, topic: str) -> bool:
        """True when some pattern of `action` matches the whole of `topic`."""
        match = self._matchers.get(action)
        return match is not None and match(topic) is not None


def _validate(claim: object) -> dict[Action, list[str]]:
    if not isinstance(claim, Mapping):
        raise MalformedClaim(f"must be an object, not {type(claim).__name__}")
    shaped: dict[Action, list[str]] = {}
    for key, patterns in claim.items():
        action = _ACTIONS.get(key) if isinstance(key, str) else None
        if action is None:
            # Strict on purpose: a typo ("subcribe") must not silently deny or allow.
            raise MalformedClaim(f"unknown action {str(key)[:40]!r}")
        if not isinstance(patterns, list) or len(patterns) > MAX_PATTERNS:
            raise MalformedClaim(f"{action}: must be a list of at most {MAX_PATTERNS} patterns")
        for pattern in patterns:
            if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_LENGTH:
                raise MalformedClaim(f"{action}: every pattern must be a non-empty string "
                                     f"of at most {MAX_PATTERN_LENGTH} characters")
            if _SUB_NOT_A_SEGMENT.search(pattern):
                raise MalformedClaim(f"{action}: {{sub}} must be a whole segment, between "
                                     "separators (: . /) or the pattern's ends")
        shaped[action] = patterns
    return shaped


def compile_topics(claim: object, sub: str | None) -> TopicRules:
    """Compile a ``topics`` claim for the principal `sub`. Never raises.

    A malformed claim is logged (its shape problem, not its content) and denies all.
    A pattern with ``{sub}`` is dropped when there is no `sub`, or one that is not a
    single segment (module docstring): it matches nothing then.
    """
    try:
        shaped = _validate(claim)
    except MalformedClaim as exc:
        log.warning("malformed 'topics' claim (sub=%r): %s; every action is denied", sub, exc)
        return TopicRules.deny_all()
    # Escaping is moot for a segment-only sub; kept so the substitution is literal by
    # construction, whatever SUB_SEGMENT allows one day.
    segment = sub is not None and SUB_SEGMENT.fullmatch(sub) is not None
    escaped = escape_glob(sub) if sub is not None and segment else None
    matchers: dict[Action, _Matcher] = {}
    for action, patterns in shaped.items():
        globs = [p.replace(SUB_PLACEHOLDER, escaped) if escaped is not None else p
                 for p in patterns if escaped is not None or SUB_PLACEHOLDER not in p]
        if globs:
            # translate() gives "(?s:...)\Z" per glob; one alternation = one match per check.
            regex = re.compile("|".join(fnmatch.translate(g) for g in dict.fromkeys(globs)))
            matchers[action] = regex.match
    return TopicRules(matchers)


class Authorizer:
    """Combines a principal's `TopicRules` with an optional app hook (module docstring).

    `check` is the hub's hot path: it returns a plain `bool` whenever no coroutine is
    involved (no hook, a claim that denies, or a sync hook) and an awaitable only when
    the hook returned one. `allowed` is the always-async convenience.
    """

    __slots__ = ("_hook", "namespaces")

    def __init__(self, hook: AuthorizeHook | None = None,
                 namespaces: NamespacePolicy | None = None) -> None:
        self._hook = hook
        self.namespaces = namespaces

    @property
    def hook(self) -> AuthorizeHook | None:
        """The app hook, if any."""
        return self._hook

    def refusal(self, principal: Principal, action: Action, topic: str) -> ErrorCode | None:
        """Why `action` cannot be done on `topic` by anyone but the API key, before any
        permission is looked at: the namespaces' unknown channel (`INVALID_TOPIC`) or a
        feature they keep off (`PRESENCE_OFF`, `HISTORY_OFF`). None without namespaces."""
        namespaces = self.namespaces
        if namespaces is None or principal.is_api_key:
            return None
        return namespaces.refusal(action, topic)

    def check(self, principal: Principal, action: Action, topic: str, *,
              subscribed: bool = False) -> bool | Awaitable[bool]:
        """Whether `principal` may do `action` on `topic` (a bool, or an awaitable of one);
        `subscribed`: the connection is subscribed to `topic` (or is being subscribed)."""
        rules = principal.rules
        if rules is not None and not rules.allows(action, topic):
            return False  # the claim denies: the hook is not asked
        namespaces = self.namespaces
        if namespaces is not None and not namespaces(principal, action, topic, subscribed):
            return False
        hook = self._hook
        if hook is None:
            return True
        try:
            result = hook(principal, action, topic)
        except Exception:
            log.exception("authorize hook raised for %s %r: denied", action.value, topic)
            return False
        if isinstance(result, bool):
            return result
        if inspect.isawaitable(result):
            return self._settle(result, action, topic)
        return _not_bool(result, action, topic)

    async def allowed(self, principal: Principal, action: Action, topic: str) -> bool:
        """`check` (not subscribed: an HTTP caller), always awaited."""
        result = self.check(principal, action, topic)
        return result if isinstance(result, bool) else await result

    @staticmethod
    async def _settle(pending: Awaitable[Any], action: Action, topic: str) -> bool:
        try:
            result = await pending
        except Exception:
            log.exception("authorize hook raised for %s %r: denied", action.value, topic)
            return False
        return result if isinstance(result, bool) else _not_bool(result, action, topic)


def _not_bool(result: object, action: Action, topic: str) -> bool:
    # Truthiness is not permission: a hook that returns None by accident must deny.
    log.error("authorize hook returned %s, not bool, for %s %r: denied",
              type(result).__name__, action.value, topic)
    return False
