"""A server-side subscribe's options travel between nodes inside the control command
(`hub.control`): exact data bytes, the info value, the overrides; a malformed part is
dropped with a warning rather than acted on."""

from __future__ import annotations

import logging

import orjson
import pytest

from pubsocket.hub.control import decode, decode_options, encode, encode_options
from pubsocket.protocol import SubscribeOptions


def _through_the_broker(options: SubscribeOptions) -> SubscribeOptions | None:
    command = decode(encode("subscribe", "ann", topic="room:1",
                            options=encode_options(options)))
    assert command is not None
    return decode_options(command["options"])


def test_options_round_trip_with_exact_data_bytes() -> None:
    data = b'{"b": 1.50, "a": "\xc3\xa9"}'  # key order, number text, UTF-8 kept
    options = SubscribeOptions({"seat": [7]}, data, False, None, True)
    assert _through_the_broker(options) == options
    assert _through_the_broker(SubscribeOptions()) == SubscribeOptions()


@pytest.mark.parametrize("raw", [
    {"data": {"not": "text"}}, {"presence": "no"}, {"join_leave": 0},
])
def test_a_malformed_part_drops_the_options(raw: object,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "pubsocket.hub"):
        assert decode_options(orjson.loads(orjson.dumps(raw))) is None
    assert "malformed options" in caplog.text
    assert decode_options(None) is None  # none sent: none
