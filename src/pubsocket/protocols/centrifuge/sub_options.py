"""The options of one channel of a connection token's ``subs`` claim, parsed once.
The same reading serves a subscription token's ``info``/``override`` (`connect`) and the
server API's ``subscribe`` (`web.server_api`); each becomes a protocol-neutral
`SubscribeOptions`.

Centrifugo's ``subs`` claim maps a channel to its subscribe options (centrifugo
``SubscribeOptions``; centrifugal.dev ``server/authentication.md``)::

    {"info": {...}, "b64info": "...", "data": {...}, "b64data": "...",
     "override": {"presence": {"value": false}, "join_leave": {"value": false},
                  "force_push_join_leave": {"value": true},
                  "force_recovery": {...}, "force_positioning": {...}}}

What each becomes here (`server_subs` applies them):

* ``data`` / ``b64data``: the ``data`` of that channel's entry in the connect reply's
  ``subs`` (the SDK's server-side ``subscribed`` event has it as ``ctx.data``);
* ``info`` / ``b64info``: this client's channel info in that channel, ``chan_info``
  beside ``conn_info`` in presence and in its join push (not in its publications:
  the publisher a publication carries is per connection, docs/centrifuge.md);
* ``override``: ``presence`` false keeps the client out of the channel's presence;
  ``join_leave`` false announces neither its join nor its leave;
  ``force_push_join_leave`` true gives it the channel's join/leave pushes without the
  presence permission, false none. An override can only narrow what the topic has:
  true for ``presence`` / ``join_leave`` where the topic has none does nothing, and
  ``force_recovery`` / ``force_positioning`` are read and ignored (a topic is
  positioned and recoverable exactly when it keeps history).

Validated whole before anything is subscribed: a value of the wrong type, ``b64*``
text that is not base64 or does not decode to JSON (the JSON protocol carries
``info`` and ``data`` as JSON), or ``info`` and ``data`` of all channels together
longer than `Settings.connect_message_size` (what a connect may carry before it is
accepted) raise `BadOptions`: the connect is refused like any bad ``subs`` claim.
Unknown keys are ignored, as Centrifugo's JSON decoding ignores them.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ...protocol import SubscribeOptions

_OVERRIDES: Final = ("presence", "join_leave", "force_push_join_leave", "force_recovery",
                     "force_positioning")


class BadOptions(ValueError):
    """A channel's options in the ``subs`` claim are malformed or too large."""


# One channel's options are the protocol-neutral `SubscribeOptions` the server API's
# subscribe also gives (force_recovery / force_positioning validated, not kept).
NONE: Final = SubscribeOptions()


def _json(raw: Mapping[str, Any], key: str) -> bytes | None:
    """The JSON bytes of `key` or of its base64 twin ``b64<key>`` (the plain one wins,
    as it does in Centrifugo)."""
    value = raw.get(key)
    if value is not None:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # too deep, an integer past 64 bits
            raise BadOptions(f"{key} is not encodable JSON") from None
    text = raw.get("b64" + key)
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise BadOptions(f"b64{key} is not a string")
    try:
        decoded = b64decode(text, validate=True)
        orjson.loads(decoded)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise BadOptions(f"b64{key} is not base64 of JSON") from None
    return decoded


def _flag(override: Mapping[str, Any], key: str) -> bool | None:
    value = override.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadOptions(f"override.{key} is not an object")
    flag = value.get("value", False)  # an empty BoolValue is false, as in protobuf
    if not isinstance(flag, bool):
        raise BadOptions(f"override.{key}.value is not a boolean")
    return flag


def parse_one(raw: object) -> tuple[SubscribeOptions, int]:
    """One channel's options and the bytes of its ``info`` and ``data``."""
    if raw is None:
        return NONE, 0
    if not isinstance(raw, Mapping):
        raise BadOptions("a channel's options are not an object")
    info_bytes, data = _json(raw, "info"), _json(raw, "data")
    override = raw.get("override")
    if override is None:
        override = {}
    elif not isinstance(override, Mapping):
        raise BadOptions("override is not an object")
    presence, join_leave, push, _, _ = (_flag(override, key) for key in _OVERRIDES)
    if info_bytes is None and data is None and presence is join_leave is push is None:
        return NONE, 0
    info = None if info_bytes is None else orjson.loads(info_bytes)
    size = len(info_bytes or b"") + len(data or b"")
    return SubscribeOptions(info, data, presence, join_leave, push), size


def parse(claim: Mapping[str, Any], max_bytes: int) -> dict[str, SubscribeOptions]:
    """Every channel's options of a ``subs`` claim, by channel; those without any are
    left out. `max_bytes` (0: no limit) bounds all ``info`` and ``data`` together."""
    out: dict[str, SubscribeOptions] = {}
    total = 0
    for channel, raw in claim.items():
        options, size = parse_one(raw)
        total += size
        if max_bytes and total > max_bytes:
            raise BadOptions("the subs claim's info and data are too large")
        if options is not NONE:
            out[str(channel)] = options
    return out
