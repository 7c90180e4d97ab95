"""Presence in Redis, shared by every node, with entries that expire when a node dies.

Data layout, per topic ``T`` (``{T}`` is a hash tag: one topic's keys share a cluster slot)::

    <prefix>{T}:c   HASH  client_id -> JSON {"k": user key, "u": user, "i": info,
                                            "ci": channel info, when there is one}
    <prefix>{T}:e   ZSET  client_id scored by its expiry time (ms, Redis server clock)
    <prefix>{T}:u   HASH  user key -> live connections of that user in T

The user key is ``u:<user>``, or ``c:<client_id>`` for an anonymous client (its own user).

TTL model: `add` and the refresh give an entry the expiry ``now + ttl``; each node
re-scores only its own entries every ``ttl / 3``. Every script first *prunes*: it takes
the client ids whose score is <= now (at most `PRUNE_BATCH` per call), deletes them from
``:c`` and decrements their user's count in ``:u`` (deleting it at 0). So the entries of
a node killed with ``kill -9`` stop counting within ``ttl``: `get` filters on the score
(exact even mid-prune) and `stats` prunes to completion first. Every key also gets a
Redis TTL of at least ``ttl`` on each write, so a topic nobody touches any more vanishes
by itself. Time is Redis's ``TIME``, so node clocks do not matter.

Atomicity: add/remove/prune are Lua scripts, so "first of user" (count went 0 -> 1) and
"last of user" (1 -> 0) are decided by Redis once for the whole cluster. The refresh only
re-scores entries that still exist (a refresh racing a remove cannot resurrect it); an
own entry found missing (this node stalled for longer than ``ttl``) is re-added with
`add`, without a join event. Not announced: the leaves of a dead node's users (the
entries just stop counting); see docs/auth-presence-draft.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from .base import DEFAULT_TTL, ClientInfo, Presence, PresenceUnavailable, Removed, Stats

log = logging.getLogger("pubsocket.presence")

DEFAULT_PREFIX = "pubsocket:presence:"
PRUNE_BATCH = 1000  # expired entries removed per script call (bounds one script's run time)
REFRESH_CHUNK = 500  # client ids per refresh call
REFRESH_PIPELINE = 100  # refresh calls per round trip
MAX_CONNECTIONS = 32  # concurrent calls beyond this wait for a connection (up to 5 s)
_STATS_ROUNDS = 1000  # prune rounds before stats gives up waiting for a clean topic

_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function prune()
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, @BATCH@)
  for _, id in ipairs(dead) do
    local v = redis.call('HGET', KEYS[1], id)
    if v then
      local k = cjson.decode(v)['k']
      if redis.call('HINCRBY', KEYS[3], k, -1) <= 0 then redis.call('HDEL', KEYS[3], k) end
      redis.call('HDEL', KEYS[1], id)
    end
  end
  if #dead > 0 then redis.call('ZREM', KEYS[2], unpack(dead)) end
  return #dead
end
local function keep(ttl)
  for i = 1, 3 do
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
""".replace("@BATCH@", str(PRUNE_BATCH))

# ARGV: client_id, user key, payload, ttl ms. Returns 1 when first of its user.
_ADD = _COMMON + """
prune()
local ttl = tonumber(ARGV[4])
local first = 0
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then first = 1 end
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
keep(ttl)
return first
"""

# ARGV: client_id. Returns false (absent) or {last (0/1), payload}. The client itself is
# removed before pruning, so a late remove still reports its own leave.
_REMOVE = _COMMON + """
local v = redis.call('HGET', KEYS[1], ARGV[1])
local result = false
if v then
  local k = cjson.decode(v)['k']
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  local n = redis.call('HINCRBY', KEYS[3], k, -1)
  if n <= 0 then redis.call('HDEL', KEYS[3], k) end
  result = {n <= 0 and 1 or 0, v}
end
prune()
return result
"""

# ARGV: ttl ms, client ids. Re-scores those that exist; returns the ids that are missing.
_REFRESH = _COMMON + """
prune()
local ttl = tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
keep(ttl)
return missing
"""

# Returns {ids, payloads} of live entries (score > now).
_GET = _COMMON + """
prune()
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
if #ids == 0 then return {{}, {}} end
return {ids, redis.call('HMGET', KEYS[1], unpack(ids))}
"""

# Returns {connections, users}, or {-1, -1} while expired entries remain to be pruned.
_STATS = _COMMON + """
if prune() == @BATCH@ then return {-1, -1} end
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}
""".replace("@BATCH@", str(PRUNE_BATCH))


def _user_key(client: ClientInfo) -> str:
    return f"u:{client.user}" if client.user is not None else f"c:{client.client_id}"


def _decode(client_id: str, payload: bytes) -> ClientInfo:
    data = orjson.loads(payload)
    return ClientInfo(client_id, data["u"], data["i"], data.get("ci"))


class RedisPresence(Presence):
    """`Presence` on Redis (module docstring). `ttl` in seconds.

    `client` is borrowed (not closed by `close`) and must return bytes (no
    ``decode_responses``); without it a blocking pool of `MAX_CONNECTIONS` is made from `url`.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = DEFAULT_PREFIX,
                 ttl: float = DEFAULT_TTL, client: Redis | None = None) -> None:
        if not ttl > 0:
            raise ValueError("presence ttl must be > 0 seconds")
        self.ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._prefix = prefix
        self._owns_client = client is None
        # A blocking pool: a burst of adds (a reconnect storm) queues instead of failing.
        self._redis: Redis = client if client is not None else Redis.from_pool(
            BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=5.0))
        self._add = self._redis.register_script(_ADD)
        self._remove = self._redis.register_script(_REMOVE)
        self._refresh = self._redis.register_script(_REFRESH)
        self._get = self._redis.register_script(_GET)
        self._stats = self._redis.register_script(_STATS)
        # This node's entries (what the refresh re-scores and `close` removes).
        self._own: dict[str, dict[str, ClientInfo]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def keys(self, topic: str) -> list[str]:
        """The three Redis keys of `topic` (clients, expiries, user counts)."""
        base = f"{self._prefix}{{{topic}}}"
        return [f"{base}:c", f"{base}:e", f"{base}:u"]

    async def start(self) -> None:
        """Start the refresh task (every ttl/3). Never fails because Redis is down."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._refresh_forever(), name="presence-refresh")

    async def close(self) -> None:
        """Stop refreshing, remove this node's entries (best effort), close our client."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            # wait(), not `await task` under suppress(CancelledError): that would also
            # swallow a cancel of close() itself.
            await asyncio.wait([self._task])
        owned = [(topic, cid) for topic, clients in self._own.items() for cid in clients]
        try:
            for start in range(0, len(owned), MAX_CONNECTIONS):  # as many as the pool runs
                await asyncio.gather(*(self.remove(topic, cid)
                                       for topic, cid in owned[start:start + MAX_CONNECTIONS]))
        except PresenceUnavailable:
            log.warning("presence: Redis unreachable at close; entries expire after %gs",
                        self.ttl)
        self._own.clear()
        if self._owns_client:
            await self._redis.aclose()

    async def add(self, topic: str, client: ClientInfo) -> bool:
        """Record `client` in `topic`; True when first of its user (decided in Redis).

        The client is this node's from the call on: if Redis is unreachable (this raises
        `PresenceUnavailable`), the refresh puts it in once Redis is back, without a join
        event. Call `remove` when the client leaves whether or not `add` succeeded.
        """
        self._own.setdefault(topic, {})[client.client_id] = client
        entry = {"k": _user_key(client), "u": client.user, "i": client.info}
        if client.chan_info is not None:
            entry["ci"] = client.chan_info
        payload = orjson.dumps(entry)
        first = await self._call(self._add(keys=self.keys(topic), args=[
            client.client_id, _user_key(client), payload, self._ttl_ms]))
        return bool(first)

    async def remove(self, topic: str, client_id: str) -> Removed | None:
        """Forget `client_id` in `topic`; None when it was not there (or expired)."""
        own = self._own.get(topic)
        if own is not None:
            own.pop(client_id, None)  # first: a refresh from now on skips it
            if not own:
                del self._own[topic]
        result = await self._call(self._remove(keys=self.keys(topic), args=[client_id]))
        if not result:
            return None
        last, payload = result
        return Removed(_decode(client_id, payload).user, bool(last))

    async def get(self, topic: str) -> dict[str, ClientInfo]:
        """Every live client in `topic` (entries past their expiry are never returned)."""
        ids, payloads = await self._call(self._get(keys=self.keys(topic)))
        found: dict[str, ClientInfo] = {}
        for raw_id, payload in zip(ids, payloads, strict=True):
            if payload is not None:
                client_id = raw_id.decode()
                found[client_id] = _decode(client_id, payload)
        return found

    async def stats(self, topic: str) -> Stats:
        """Live connections and distinct users, after pruning every expired entry."""
        for _ in range(_STATS_ROUNDS):
            connections, users = await self._call(self._stats(keys=self.keys(topic)))
            if connections >= 0:
                return Stats(int(connections), int(users))
        raise PresenceUnavailable("presence: expired entries could not be pruned in time")

    async def refresh(self) -> None:
        """Re-score this node's entries now (the background task calls this every ttl/3).

        Calls are pipelined, `REFRESH_PIPELINE` per round trip, so a node with many
        topics refreshes in (topics / REFRESH_PIPELINE) round trips, not one per topic.
        """
        calls = [(topic, ids[start:start + REFRESH_CHUNK])
                 for topic, ids in ((t, list(c)) for t, c in self._own.items())
                 for start in range(0, len(ids), REFRESH_CHUNK)]
        for start in range(0, len(calls), REFRESH_PIPELINE):
            batch = calls[start:start + REFRESH_PIPELINE]
            # `async with`: the pipeline must give its connection back however execute()
            # ends. redis-py's execute() takes a connection for SCRIPT EXISTS (load_scripts)
            # before its own try/finally reset, so a cancel (close()) landing there left
            # the pipeline holding a pooled connection: leaked, and a ResourceWarning
            # ("Unclosed client session") when it was collected.
            async with self._redis.pipeline(transaction=False) as pipe:
                for topic, chunk in batch:
                    await self._refresh(keys=self.keys(topic), args=[self._ttl_ms, *chunk],
                                        client=pipe)
                results = await self._call(pipe.execute())
            for (topic, _), missing in zip(batch, results, strict=True):
                for raw_id in missing:
                    # Pruned while this node stalled: restore it if it is still ours.
                    client = self._own.get(topic, {}).get(raw_id.decode())
                    if client is not None:
                        await self.add(topic, client)

    async def _refresh_forever(self) -> None:
        interval = self.ttl / 3
        # The flag, not only the cancel, ends this loop: redis-py can turn a cancel that
        # lands mid-command into a connection error, which the loop below would survive.
        while not self._closed:
            await asyncio.sleep(interval)
            if self._closed:
                return
            try:
                await self.refresh()
            except PresenceUnavailable:
                log.warning("presence refresh failed (Redis unreachable); retrying in %gs",
                            interval)
            except Exception:
                # A bug here must not end the refresh: that would expire every entry.
                log.exception("presence refresh failed; retrying in %gs", interval)

    @staticmethod
    async def _call(pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except RedisError as exc:
            # The driver's text may hold addresses or credentials: name the type only.
            raise PresenceUnavailable(
                f"presence store unavailable ({type(exc).__name__})") from None
