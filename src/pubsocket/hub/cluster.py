"""`Cluster`: the cluster-wide view behind the server API's `info` and `channels`.

Centrifugo's `info` lists every running node and its `channels` merges every node's
channels (its node registry and its survey). Here both ride the hub's control plane:
the ``$control`` topic every node's hub subscribes (`hub.control`) and each node's own
``$n:<node>`` topic (`hub.relay`).

Contracts:

* **Node registry.** With a shared broker, each node publishes its `NodeInfo` (a fixed
  set of counters, the name at most `MAX_NAME` characters: a message of ~200 bytes) on
  ``$control`` at start and every `Settings.cluster_info_interval` seconds, and a
  ``node_leave`` when it closes. Every node keeps the others' last info; one not heard
  from in `EXPIRY` intervals (killed, cut from the broker) is forgotten. `nodes()`
  answers from that registry at once, this node first (its counters read now). At most
  `Settings.cluster_max_nodes` others are kept: a node beyond it is not listed (and
  logged). Cost per node: one small publish per interval, one small JSON decode per
  other node per interval; no task between ticks (a timer handle).
* **Survey.** `channels(pattern, cap)` publishes a ``survey`` request on ``$control``
  (counted: `relay.publish_counted`); each other node answers on the asker's
  ``$n:<node>`` topic (the reply marked by a leading NUL byte, which no routed
  command has: a session id is printable) with its channels matching `pattern`, the
  busiest `cap` (the asker's `server_api_channels_max`, no more than the answering
  node's own), and this node adds its own without I/O. The asker waits until every
  node of its registry has answered, or as many as the broker handed the request to
  (Redis counts the subscribers of ``$control``: a killed node the registry still
  lists is not waited for), at most `Settings.cluster_survey_timeout` seconds. With no
  other node in the registry nothing is sent. (A node learns of a new one within a
  round trip of its start: see `_heard`.) The counts are summed per channel and the
  busiest `cap` kept. A survey that timed out is `complete=False` with what came in
  (the front doors decide: Centrifugo answers such a survey with an error, and so does
  its dialect here). Merging per-node top-`cap` lists is exact unless a node had more
  than `cap` matching channels.
* **Bounds.** Surveys asking the same (pattern, cap) while one runs share it. At most
  `Settings.cluster_surveys_max` run at once per node and `Settings.cluster_survey_rate`
  start per second (a 1-second bucket): past either, `SurveyRefused` (error 106) with
  no broker traffic. So one node's API cannot make more than rate x nodes replies a
  second, whatever the request rate. An answering node keeps at most `MAX_REPLYING`
  replies waiting for the broker (others are dropped: the asker times out honestly).
  A reply holds at most `cap` channels; the asker accepts one reply per node, only for
  a survey it is running.
* **Single process.** Without a shared broker (memory) there is no other node: no timer,
  no message; `nodes()` is this node and `channels` its channels, as before.

A running survey's records, how its answers are checked and merged, and its outcome
are in `hub.survey`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import logging
import re
import time
from collections.abc import Callable, Coroutine
from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BrokerError, BrokerUnavailable
from .control import CONTROL_TOPIC
from .relay import NODE_PREFIX, publish_counted
from .survey import MAX_PATTERN, ChannelsSurvey, Survey, SurveyRefused

if TYPE_CHECKING:
    from .core import Hub

log = logging.getLogger("pubsocket.hub")

INFO, LEAVE, SURVEY = "node", "node_leave", "survey"  # the control ops of this module
OPS = frozenset((INFO, LEAVE, SURVEY))
REPLY_MARK = b"\x00"  # first byte of a survey reply on $n:<node>
EXPIRY = 3  # intervals without news after which a node is forgotten
MAX_NAME = 256  # characters of a node name or version
MAX_REPLYING = 16  # survey replies waiting for the broker at once, per node
_NODE = re.compile(r"[0-9a-f]{16}")


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """What `info` reports of one node."""

    uid: str
    name: str
    clients: int
    topics: int
    subscriptions: int
    users: int
    uptime: int
    version: str = ""


class ClusterStats:
    """Counters since start (for the tests and /metrics readers)."""

    __slots__ = ("answered", "incomplete", "refused", "replies_dropped", "shared", "surveys")

    def __init__(self) -> None:
        self.surveys = 0  # surveys this node ran over the broker
        self.shared = 0  # requests that joined a running survey
        self.refused = 0  # requests refused by the bounds
        self.incomplete = 0  # surveys that timed out
        self.answered = 0  # other nodes' surveys this node answered
        self.replies_dropped = 0  # answers not sent: MAX_REPLYING waited already


class Cluster:
    """The registry of the other nodes and the `channels` survey (module docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.node = hub.relay.node
        self.name = "pubsocket"
        self.version = _version()
        self.connections: Callable[[], int] = lambda: 0  # set by the front door
        self.started = time.monotonic()
        self.stats = ClusterStats()
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}  # node -> info, heard at
        self._surveys: dict[int, Survey] = {}
        self._running: dict[tuple[str, int], asyncio.Task[ChannelsSurvey]] = {}
        self._next_id = 0
        self._window = (0.0, 0)  # (second it started, surveys started in it)
        self._replying = 0
        self._announcing = False
        self._handle: asyncio.TimerHandle | None = None
        self._full_logged = False

    @property
    def interval(self) -> float:
        return self.hub.settings.cluster_info_interval

    @property
    def active(self) -> bool:
        """True when there are other nodes to hear from (shared broker, interval set)."""
        return self.interval > 0 and self.hub.broker.shared

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Announce this node now and every interval (nothing without a shared broker)."""
        if self.active and self._handle is None:
            self._tick()

    async def close(self) -> None:
        """Stop announcing and tell the others this node leaves (best effort, bounded)."""
        handle, self._handle = self._handle, None
        self._announcing = False  # its task was cancelled with the hub's others
        if handle is None:
            return
        handle.cancel()
        try:
            async with asyncio.timeout(0.5):
                await self.hub.publish_internal(CONTROL_TOPIC, orjson.dumps(
                    {"op": LEAVE, "node": self.node}))
        except (BrokerError, OSError, TimeoutError):  # the others expire this node
            log.debug("node_leave not sent")

    def _tick(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)
        self._expire()
        if not self._announcing:  # one announcement in flight at most
            self._announcing = True
            self._spawn(self._announce())

    async def _announce(self) -> None:
        info = self.describe()
        message = orjson.dumps({
            "op": INFO, "node": self.node, "name": info.name, "version": info.version,
            "clients": info.clients, "users": info.users, "topics": info.topics,
            "subs": info.subscriptions, "uptime": info.uptime})
        try:
            await self.hub.publish_internal(CONTROL_TOPIC, message)
        except (BrokerError, OSError):  # the broker is down: the next tick tries again
            log.debug("node info not published")
        finally:
            self._announcing = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.hub._spawn(coro)

    # -- the registry --------------------------------------------------------------------
    def describe(self) -> NodeInfo:
        """This node's counters, read now."""
        hub = self.hub
        return NodeInfo(self.node, self.name, self.connections(), hub.topic_count,
                        hub.subscription_count, hub.registry.users,
                        int(time.monotonic() - self.started), self.version)

    def nodes(self) -> list[NodeInfo]:
        """Every running node known: this one first, then the others by uid (their
        counters as of their last info, at most an interval old; uptime aged to now)."""
        self._expire()
        now = time.monotonic()
        return [self.describe(), *(
            dataclasses.replace(info, uptime=info.uptime + int(now - heard))
            for _, (info, heard) in sorted(self._nodes.items()))]

    @property
    def known(self) -> int:
        """Other nodes in the registry (not yet expired)."""
        self._expire()
        return len(self._nodes)

    def _expire(self) -> None:
        horizon = time.monotonic() - EXPIRY * self.interval
        for node in [n for n, (_, heard) in self._nodes.items() if heard < horizon]:
            del self._nodes[node]

    def apply(self, command: dict[str, Any]) -> bool:
        """Handle one decoded control message if it is one of this module's (True)."""
        op = command["op"]
        if op not in OPS:
            return False
        node = command.get("node")
        if not isinstance(node, str) or not _NODE.fullmatch(node) or node == self.node:
            return True  # our own (every node hears its own publishes), or malformed
        if op == INFO:
            self._heard(node, command)
        elif op == LEAVE:
            self._nodes.pop(node, None)
        else:
            self._answer(node, command)
        return True

    def _heard(self, node: str, command: dict[str, Any]) -> None:
        cap = self.hub.settings.cluster_max_nodes
        if node not in self._nodes and cap and len(self._nodes) >= cap:
            if not self._full_logged:
                self._full_logged = True
                log.warning("more than %d other nodes: the others are not listed", cap)
            return
        raw = [command.get(k) for k in ("clients", "topics", "subs", "users", "uptime")]
        counts = [c for c in raw if isinstance(c, int) and not isinstance(c, bool) and c >= 0]
        name, version = command.get("name"), command.get("version", "")
        if len(counts) != len(raw) or not isinstance(name, str) or not isinstance(
                version, str):
            return
        clients, topics, subs, users, uptime = counts
        if node not in self._nodes and not self._announcing:
            # A node new to this one learns of it now, not an interval later.
            self._announcing = True
            self._spawn(self._announce())
        self._nodes[node] = (NodeInfo(node, name[:MAX_NAME], clients, topics, subs, users,
                                      uptime, version[:MAX_NAME]), time.monotonic())

    # -- channels --------------------------------------------------------------------------
    def local_channels(self, pattern: str | None, cap: int) -> list[tuple[str, int]]:
        """This node's busiest `cap` topics (0: all) matching the glob `pattern`."""
        hub = self.hub
        if not pattern:
            return hub.busiest_topics(cap or hub.topic_count)
        glob = pattern
        return hub.busiest_topics(cap or hub.topic_count,
                                  lambda topic: fnmatch.fnmatchcase(topic, glob))

    async def channels(self, pattern: str | None, cap: int) -> ChannelsSurvey:
        """Channels -> subscribers on every node (module docstring "Survey"). Raises
        `SurveyRefused` past the bounds, `BrokerUnavailable` when the request cannot be
        sent or this node cannot hear the answers."""
        if not self.active:
            return ChannelsSurvey(dict(self.local_channels(pattern, cap)), 1, True)
        key = (pattern or "", cap)
        running = self._running.get(key)
        if running is not None:
            self.stats.shared += 1
            return await asyncio.shield(running)
        settings = self.hub.settings
        now = time.monotonic()
        second, started = self._window
        if now - second >= 1.0:
            second, started = now, 0
        if ((settings.cluster_surveys_max and len(self._running) >= settings.cluster_surveys_max)
                or (settings.cluster_survey_rate and started >= settings.cluster_survey_rate)):
            self.stats.refused += 1
            raise SurveyRefused()
        if not self.hub.relay.ready or not self.hub.broker.healthy:
            raise BrokerUnavailable("this node cannot hear survey replies now")
        self._window = (second, started + 1)
        task = asyncio.get_running_loop().create_task(self._survey(pattern, cap))
        self._running[key] = task
        self.hub._background.add(task)  # cancelled when the hub closes

        def done(task: asyncio.Task[ChannelsSurvey]) -> None:
            self.hub._background.discard(task)
            self._running.pop(key, None)
            if not task.cancelled():
                task.exception()  # retrieved: every caller that still waits raises it

        task.add_done_callback(done)
        # Shielded: one caller going away (its HTTP client left) must not cancel the
        # survey the others share.
        return await asyncio.shield(task)

    async def _survey(self, pattern: str | None, cap: int) -> ChannelsSurvey:
        self._expire()
        if not self._nodes:  # no other node known: nothing to ask
            return ChannelsSurvey(dict(self.local_channels(pattern, cap)), 1, True)
        self.stats.surveys += 1
        self._next_id += 1
        survey_id = self._next_id
        survey = self._surveys[survey_id] = Survey(set(self._nodes), cap)
        try:
            receivers = await publish_counted(self.hub.broker, CONTROL_TOPIC, orjson.dumps({
                "op": SURVEY, "node": self.node, "id": survey_id, "pattern": pattern or "",
                "cap": cap}))
            if receivers is not None:
                survey.counted = max(receivers - 1, 0)  # this node hears its own
            survey.check()
            try:
                async with asyncio.timeout(self.hub.settings.cluster_survey_timeout):
                    await survey.done
                complete = True
            except TimeoutError:
                complete = False
                self.stats.incomplete += 1
                log.warning("channels survey: %d node(s) answered in time, %s expected",
                            len(survey.answers), survey.counted if survey.counted is not None
                            else len(survey.expected))
        finally:
            del self._surveys[survey_id]
        return ChannelsSurvey(survey.merged(self.local_channels(pattern, cap)),
                              1 + len(survey.answers), complete)

    def _answer(self, asker: str, command: dict[str, Any]) -> None:
        """Another node's survey: send it this node's channels (bounded, see docstring)."""
        survey_id, pattern, cap = command.get("id"), command.get("pattern"), command.get("cap")
        if (not isinstance(survey_id, int) or not isinstance(pattern, str)
                or len(pattern) > MAX_PATTERN or not isinstance(cap, int) or cap < 0):
            return
        own = self.hub.settings.server_api_channels_max
        cap = min(cap, own) if cap and own else (cap or own)
        if self._replying >= MAX_REPLYING:
            self.stats.replies_dropped += 1
            return
        self.stats.answered += 1
        reply = REPLY_MARK + orjson.dumps({"id": survey_id, "node": self.node,
                                           "channels": self.local_channels(pattern, cap)})
        self._replying += 1
        self._spawn(self._send(NODE_PREFIX + asker, reply))

    async def _send(self, topic: str, reply: bytes) -> None:
        try:
            await self.hub.publish_internal(topic, reply)
        except (BrokerError, OSError):  # the asker times out
            log.debug("survey reply not sent")
        finally:
            self._replying -= 1

    def reply(self, payload: bytes) -> None:
        """A survey reply that reached this node's ``$n:<node>`` (after `REPLY_MARK`)."""
        try:
            message: Any = orjson.loads(payload)
            survey = self._surveys.get(message["id"])
            node, channels = message["node"], message["channels"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if (survey is None or not isinstance(node, str) or node in survey.answers
                or not isinstance(channels, list)):
            return  # late (the survey ended), repeated or malformed
        survey.add(node, channels)


@functools.cache
def _version() -> str:
    try:
        return metadata.version("pubsocket")
    except metadata.PackageNotFoundError:  # running from a source tree
        return ""


__all__ = ["OPS", "REPLY_MARK", "ChannelsSurvey", "Cluster", "ClusterStats", "NodeInfo",
           "SurveyRefused"]
