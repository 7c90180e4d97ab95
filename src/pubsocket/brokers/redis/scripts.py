"""What the Redis broker stores and sends: key names, the Lua scripts, the message framing.

One topic with history has two keys sharing the hash tag ``{<topic>}``, so that each
script touches a single slot (the scripts would run unchanged on Redis Cluster):

* ``<prefix>{<topic>}.m``: a hash, ``e`` = epoch, ``o`` = top offset, ``n`` = the
  policy size of the last publish, ``c`` = the counted bytes published in this epoch so
  far (payload + publisher JSON of the publications `byte_budget` counts),
  ``t`` = the value of ``c`` before the oldest entry the byte cap last looked at (so
  ``c - t`` bounds the counted bytes the stream keeps); expires `meta_ttl` after the
  last publish or history read;
* ``<prefix>{<topic>}.s``: a stream, entry id ``<offset>-<c before it>``, field ``d`` =
  payload (and ``p`` = the publisher JSON, when there is a publisher), trimmed to about
  ``policy.size`` entries (reads return at most the newest ``n``) and to at most the
  byte cap (exactly: oldest first, never the newest entry); expires ``policy.ttl``
  after the last publish. The entry id's sequence part carries the running byte count,
  so the byte cap finds what count trimming already removed from the oldest id alone;
* ``<prefix>{<topic>}.i:<key>``: ``"<offset>:<epoch>"`` of the publish that first used an
  idempotency key (``"0:"`` without history); expires `idempotency_ttl` after it.

The epoch is created by whichever script first finds the meta missing, from a random
candidate the client passes (scripts must be deterministic, and Lua's randomness is
not); a stream left over from a lost meta is deleted then, so offsets restart at 1.

Every message on a topic's channel is framed ``b"<offset>:<epoch>:" + payload``
(``b"0::" + payload`` without history): the reader learns the position without another
round trip, and the payload is sliced out once. A publication with a publisher is framed
``b"<offset>:<epoch>:~<n>:" + publisher JSON (n bytes) + payload``: a JSON payload never
starts with ``~``, so server-side publishes keep the short form at no cost.

The publisher JSON is ``[client, user]`` or ``[client, user, info]`` (`info` spliced in
raw, never re-encoded on the way in); both directions are cached per distinct
publisher, so a reading node parses one connection's publisher once, not per message.
"""

from __future__ import annotations

import functools
import random
import sys
from typing import Any

import orjson

from ..base import HistoryPage, HistoryPolicy, Position, Publication, Publisher

# KEYS: meta, stream, and the idempotency key (optional). ARGV: channel, payload, size,
# ttl ms, meta ttl ms, candidate epoch, the publisher JSON ("" for none), the byte budget
# this publication counts against ("0": it is not counted, see `byte_budget`), and the
# idempotency key's ttl ms (with KEYS[3]).
# KEYS[3] holds "<offset>:<epoch>" of the publish that first used it: a repeat returns
# that and does nothing else.
# The stream is trimmed approximately by count (MAXLEN ~: whole stream nodes at a time),
# which measured twice as fast as exact trimming on Redis 7.0; the size is kept in the
# meta (``n``) so that history reads never return more than the newest `size` entries.
# The byte cap (`byte_budget`): small publications are not counted, so most publishes
# pay nothing for it; the counted ones are kept within their budget exactly: while
# ``c - t`` is over it, the oldest entry is read (its id tells ``t``, as count trimming
# may have removed older ones) and deleted, never the newest.
PUBLISH_LUA = b"""
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local at = string.find(seen, ':', 1, true)
    return {string.sub(seen, 1, at - 1), string.sub(seen, at + 1)}
  end
end
local meta = redis.call('HMGET', KEYS[1], 'e', 'n', 'c')
local epoch = meta[1]
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[1], 'e', epoch, 'n', ARGV[3])
  redis.call('DEL', KEYS[2])
elseif meta[2] ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'n', ARGV[3])
end
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'o', 1))
local head = offset .. ':' .. epoch .. ':'
local id = offset .. '-' .. (meta[3] or '0')
if ARGV[7] == '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id, 'd', ARGV[2])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], id, 'd', ARGV[2], 'p', ARGV[7])
  head = head .. '~' .. string.len(ARGV[7]) .. ':' .. ARGV[7]
end
if ARGV[8] ~= '0' then
  local budget = tonumber(ARGV[8])
  local total = redis.call('HINCRBY', KEYS[1], 'c', string.len(ARGV[2]) + string.len(ARGV[7]))
  if total > budget then
    local kept = tonumber(redis.call('HGET', KEYS[1], 't')) or 0
    local was = kept
    while total - kept > budget do
      local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
      if not oldest then break end
      local before = tonumber(string.match(oldest[1], '-(%d+)$'))
      if before > kept then kept = before end
      if total - kept <= budget or oldest[1] == id then break end
      redis.call('XDEL', KEYS[2], oldest[1])
    end
    if kept ~= was then
      redis.call('HSET', KEYS[1], 't', string.format('%d', kept))
    end
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], head .. ARGV[2])
if KEYS[3] then
  redis.call('SET', KEYS[3], offset .. ':' .. epoch, 'PX', ARGV[9])
end
return {offset, epoch}
"""

# A publish without history but with an idempotency key. KEYS: the idempotency key.
# ARGV: channel, the framed message, the key's ttl ms. Returns {0, ""} either way.
PUBLISH_ONCE_LUA = b"""
if redis.call('SET', KEYS[1], '0:', 'NX', 'PX', ARGV[3]) then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return {0, ''}
"""

# KEYS: meta, stream. ARGV: first wanted offset (since + 1), count, meta ttl ms,
# candidate epoch, byte cap (0: none). Returns {top offset, epoch, entries}: at most the
# newest `n`. With a byte cap the stream is read in small pages (1, 2, 4, ... up to 32
# entries) and the read stops before the entry that would pass the cap (the first entry
# always goes in): a read never moves 1000 entries of 1 MiB only to drop most of them.
HISTORY_LUA = b"""
local meta = redis.call('HMGET', KEYS[1], 'e', 'o', 'n')
local epoch = meta[1]
local top = tonumber(meta[2]) or 0
if not epoch then
  epoch = ARGV[4]
  top = 0
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local entries = {}
local want = tonumber(ARGV[2])
if want > 0 then
  local first = tonumber(ARGV[1])
  local size = tonumber(meta[3])
  if size and first < top - size + 1 then
    first = top - size + 1
  end
  local cap = tonumber(ARGV[5]) or 0
  if cap <= 0 then
    return {top, epoch, redis.call('XRANGE', KEYS[2], string.format('%d', first) .. '-0',
                                   '+', 'COUNT', want)}
  end
  local bytes, page = 0, 1
  while #entries < want do
    local got = redis.call('XRANGE', KEYS[2], string.format('%d', first) .. '-0', '+',
                           'COUNT', math.min(page, want - #entries))
    if #got == 0 then
      break
    end
    for _, entry in ipairs(got) do
      local fields, n = entry[2], 0
      for i = 2, #fields, 2 do
        n = n + string.len(fields[i])
      end
      bytes = bytes + n
      if #entries > 0 and bytes > cap then
        return {top, epoch, entries}
      end
      entries[#entries + 1] = entry
      if bytes >= cap then
        return {top, epoch, entries}
      end
    end
    first = tonumber(string.match(got[#got][1], '^(%d+)')) + 1
    page = math.min(page * 2, 32)
  end
end
return {top, epoch, entries}
"""

_COLON = ord(":")
_TILDE = ord("~")
_CACHED_PUBLISHERS = 4096  # distinct publishers remembered per direction (lru_cache)


@functools.lru_cache(maxsize=_CACHED_PUBLISHERS)
def publisher_json(publisher: Publisher) -> bytes:
    """The compact publisher JSON stored and sent with a publication."""
    if publisher.info:
        return orjson.dumps([publisher.client, publisher.user, orjson.Fragment(publisher.info)])
    return orjson.dumps([publisher.client, publisher.user])


@functools.lru_cache(maxsize=_CACHED_PUBLISHERS)
def parse_publisher(data: bytes) -> Publisher:
    """The `Publisher` of `publisher_json` bytes (raises ValueError if malformed)."""
    fields = orjson.loads(data)
    if not isinstance(fields, list) or len(fields) not in (2, 3):
        raise ValueError("publisher is not [client, user, info?]")
    client, user = fields[0], fields[1]
    if not isinstance(client, str) or not (user is None or isinstance(user, str)):
        raise ValueError("publisher client/user are not strings")
    info = orjson.dumps(fields[2]) if len(fields) == 3 else b""
    return Publisher(client, user, bytes(memoryview(info)))  # exact size: it is kept


# KEYS: meta, stream. Drops the kept publications, keeps the position (epoch, top
# offset); the byte counter's floor `t` moves up to `c`: nothing counted is kept now.
REMOVE_HISTORY_LUA = """
redis.call('DEL', KEYS[2])
local c = redis.call('HGET', KEYS[1], 'c')
if c then redis.call('HSET', KEYS[1], 't', c) end
return 1
"""


def topic_keys(prefix: str, topic: str) -> tuple[str, str]:
    """(meta hash, stream) of `topic`: one hash tag, so one slot."""
    base = f"{prefix}{{{topic}}}"
    return base + ".m", base + ".s"


def idempotency_key_name(prefix: str, topic: str, key: str) -> str:
    """The key remembering a publish's idempotency `key`: `topic`'s hash tag, so the
    publish script still touches one slot."""
    return f"{prefix}{{{topic}}}.i:{key}"


def candidate_epoch() -> str:
    """A fresh random epoch (12 hex digits): used only if the topic has none.

    Not a secret, so the fast non-cryptographic generator will do; it is drawn anew for
    every call so that a topic whose keys were lost cannot get its old epoch back.
    """
    return f"{random.getrandbits(48):012x}"


# Stream nodes hold at most this many entries (Redis's stream-node-max-entries default),
# so approximate count trimming keeps at most `size` + this many.
_NODE_ENTRIES = 100


@functools.lru_cache(maxsize=64)
def byte_budget(cap: int, size: int) -> tuple[int, bytes]:
    """(smallest counted publication, the budget of the counted ones) for a topic byte
    cap of `cap` bytes and a history of `size` publications.

    Publications under ``cap / (8 * (size + 100))`` bytes (2.6 KB for the defaults) are
    not counted: at most ``size + 100`` of them are kept, so together they hold at most
    an eighth of the cap; the counted ones get the rest. So a stream never keeps more
    than `cap` bytes (payload + publisher JSON) plus its newest publication. No cap
    (``cap <= 0``): nothing is counted.
    """
    if cap <= 0:
        return sys.maxsize, b"0"
    smallest = cap // (8 * (size + _NODE_ENTRIES))
    return smallest, b"%d" % max(1, cap - (size + _NODE_ENTRIES) * smallest)


def milliseconds(seconds: float) -> int:
    """A PEXPIRE argument: at least 1 ms (0 would delete the key at once)."""
    return max(1, int(seconds * 1000))


def parse_message(data: bytes) -> Publication:
    """The publication in one channel message (raises ValueError if it is not framed)."""
    first = data.index(_COLON)
    second = data.index(_COLON, first + 1)
    offset, epoch = int(data[:first]), data[first + 1 : second].decode()
    if len(data) <= second + 1 or data[second + 1] != _TILDE:
        return Publication(offset, epoch, data[second + 1 :])
    third = data.index(_COLON, second + 2)
    start = third + 1
    end = start + int(data[second + 2 : third])
    if end > len(data):
        raise ValueError("publisher runs past the message")
    return Publication(offset, epoch, data[end:], parse_publisher(data[start:end]))


def publication_from_reply(
    reply: Any, payload: bytes, publisher: Publisher | None = None
) -> Publication:
    """The publish script's ``{offset, epoch}`` reply as a Publication of `payload`."""
    offset, epoch = reply
    return Publication(int(offset), epoch.decode(), payload, publisher)


def history_from_reply(reply: Any) -> HistoryPage:
    """The history script's ``{top, epoch, entries}`` reply as a HistoryPage."""
    top, raw_epoch, entries = reply
    epoch = raw_epoch.decode()
    pubs = [
        Publication(
            int(entry_id.partition(b"-")[0]),
            epoch,
            fields[1],
            parse_publisher(fields[3]) if len(fields) > 3 else None,
        )
        for entry_id, fields in entries
    ]
    return HistoryPage(pubs, Position(int(top), epoch))


Command = tuple[str | bytes | int, ...]


def publish_command(
    prefix: str, sha: str, topic: str, payload: bytes, policy: HistoryPolicy,
    publisher: Publisher | None, meta_ttl_ms: int, idempotency_ttl_ms: int,
    idempotency_key: str | None, topic_max_bytes: int,
) -> tuple[Command, Publication | None]:
    """The Redis command of one publish, and its publication when known in advance
    (no history: offset 0), else None (build it from the script's reply with
    `publication_from_reply`). `sha` is PUBLISH_LUA's. The one place a publish is
    spelled out: the async broker's pipeline and the sync `RedisSyncPublisher` send it.
    `topic_max_bytes` is the topic's history byte cap (0: none, see `byte_budget`)."""
    channel = (prefix + topic).encode()
    who = b"" if publisher is None else publisher_json(publisher)
    if policy.size <= 0:  # no keys, no position: a plain PUBLISH, framed like the rest
        pub = Publication(0, "", payload, publisher)
        head = b"0::~%d:%b" % (len(who), who) if who else b"0::"
        if idempotency_key is None:
            return ("PUBLISH", channel, head + payload), pub
        once = idempotency_key_name(prefix, topic, idempotency_key)
        # Rare: EVAL (Redis caches the script by its hash, so it is compiled once).
        return ("EVAL", PUBLISH_ONCE_LUA, 1, once, channel, head + payload,
                idempotency_ttl_ms), pub
    meta, stream = topic_keys(prefix, topic)
    smallest, budget = byte_budget(topic_max_bytes, policy.size)
    tail = (policy.size, milliseconds(policy.ttl), meta_ttl_ms, candidate_epoch(), who,
            budget if len(payload) + len(who) >= smallest else b"0")
    if idempotency_key is None:
        return ("EVALSHA", sha, 2, meta, stream, channel, payload, *tail), None
    once = idempotency_key_name(prefix, topic, idempotency_key)
    return ("EVALSHA", sha, 3, meta, stream, once, channel, payload, *tail,
            idempotency_ttl_ms), None
