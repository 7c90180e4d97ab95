"""`sub_options.parse`: a ``subs`` claim's channel options, typed and bounded."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pubsocket.protocol import SubscribeOptions
from pubsocket.protocols.centrifuge.sub_options import BadOptions, parse


def test_every_option_is_read_and_unknown_keys_are_ignored() -> None:
    claim = {
        "a": {"info": {"seat": 7}, "data": [1, "x"], "colour": "red", "override": {
            "presence": {"value": False}, "join_leave": {"value": True},
            "force_push_join_leave": {}, "force_recovery": {"value": True},
            "force_positioning": {"value": False}, "nope": {"value": 3}}},
        "b": {"b64info": base64.b64encode(b'"two"').decode(),
              "b64data": base64.b64encode(b'{"n":2}').decode()},
        "c": {}, "d": None, "e": {"override": {}},
    }
    assert parse(claim, 0) == {
        "a": SubscribeOptions({"seat": 7}, b'[1,"x"]', False, True, False),
        "b": SubscribeOptions("two", b'{"n":2}'),
    }


def test_the_plain_field_wins_over_its_base64_twin() -> None:
    claim = {"a": {"data": 1, "b64data": "!!", "info": 2, "b64info": "!!"}}
    assert parse(claim, 0) == {"a": SubscribeOptions(2, b"1")}


@pytest.mark.parametrize("options", [
    "x", 1, [], {"info": 2 ** 70}, {"b64data": "a"},
    {"b64info": "bm90IGpzb24="}, {"b64data": 1}, {"override": 1},
    {"override": {"presence": True}}, {"override": {"presence": {"value": 1}}},
])
def test_a_malformed_option_raises(options: Any) -> None:
    with pytest.raises(BadOptions):
        parse({"a": options}, 0)


def test_info_and_data_of_all_channels_together_are_bounded() -> None:
    claim = {f"c{i}": {"info": "x" * 40, "data": "y" * 40} for i in range(5)}  # 5 * 84
    assert len(parse(claim, 420)) == 5
    with pytest.raises(BadOptions, match="too large"):
        parse(claim, 419)
