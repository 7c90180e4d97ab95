"""What the Redis broker stores and sends: key names, the Lua scripts, the message framing.

One topic with history has two keys sharing the hash tag ``{<topic>}``, so that each
script touches a single slot (the scripts would run unchanged on Redis Cluster):

* ``<prefix>{<topic>}.m``: a hash, ``e`` = epoch, ``o`` = top offset, ``n`` = the
  policy size of the last publish; expires `meta_ttl` after the last publish or history
  read;
* ``<prefix>{<topic>}.s``: a stream, entry id ``<offset>-0``, field ``d`` = payload
  (and ``p`` = the publisher JSON, when there is a publisher), trimmed to about
  ``policy.size`` entries (reads return at most the newest ``n``); expires ``policy.ttl``
  after the last publish.

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
from typing import Any

import orjson

from .base import HistoryPage, Position, Publication, Publisher

# KEYS: meta, stream. ARGV: channel, payload, size, ttl ms, meta ttl ms, candidate epoch,
# and the publisher JSON ("" for none).
# The stream is trimmed approximately (MAXLEN ~: whole stream nodes at a time), which
# measured twice as fast as exact trimming on Redis 7.0; the size is kept in the meta
# (``n``) so that history reads never return more than the newest `size` entries.
PUBLISH_LUA = b"""
local meta = redis.call('HMGET', KEYS[1], 'e', 'n')
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
if ARGV[7] == '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'd', ARGV[2])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'd', ARGV[2],
             'p', ARGV[7])
  head = head .. '~' .. string.len(ARGV[7]) .. ':' .. ARGV[7]
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], head .. ARGV[2])
return {offset, epoch}
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


def topic_keys(prefix: str, topic: str) -> tuple[str, str]:
    """(meta hash, stream) of `topic`: one hash tag, so one slot."""
    base = f"{prefix}{{{topic}}}"
    return base + ".m", base + ".s"


def candidate_epoch() -> str:
    """A fresh random epoch (12 hex digits): used only if the topic has none.

    Not a secret, so the fast non-cryptographic generator will do; it is drawn anew for
    every call so that a topic whose keys were lost cannot get its old epoch back.
    """
    return f"{random.getrandbits(48):012x}"


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
