"""A resync on topics without history (finding 7): every subscriber is told, in its
protocol, that publications may have been lost; topics with history are filled as
before and tell nobody. The real memory broker, its resync callback fired by hand."""

from __future__ import annotations

import json
from typing import Any

from pubsocket import Hub
from pubsocket.brokers import HistoryPolicy
from pubsocket.codecs import PLAIN, V1
from pubsocket.errors import CloseCode
from pubsocket.hub.wire import RAW
from pubsocket.protocols.centrifuge import CENTRIFUGE
from tests.unit.test_hub import Recorder
from tests.unit.test_hub_delivery import FaultyBroker, idle, make_hub


class Closable(Recorder):
    """A subscriber that also records being closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[tuple[int, str]] = []

    def close_nowait(self, code: int, reason: str = "") -> None:
        self.closed.append((code, reason))


def centrifuge_pushes(rec: Recorder) -> list[Any]:
    return [json.loads(line) for f in rec.frames
            for line in f.decode().splitlines()]  # raw wires: payloads


async def hub_with_off_topics() -> tuple[Hub, FaultyBroker]:
    broker = FaultyBroker()
    hub = await make_hub(broker)
    hub.rules.prepend({"off.*": None, "t": HistoryPolicy(10, 60)})
    return hub, broker


async def test_resync_tells_subscribers_of_topics_without_history() -> None:
    hub, broker = await hub_with_off_topics()
    try:
        plain, v1, cf, kept = Closable(), Closable(), Closable(), Closable()
        await hub.subscribe(plain, "off.1", RAW(PLAIN))
        await hub.subscribe(v1, "off.1", RAW(V1))
        await hub.subscribe(cf, "off.1", RAW(CENTRIFUGE))
        await hub.subscribe(kept, "t", RAW(V1))  # with history: filled, never told
        await hub.publish("off.1", "a")
        await hub.publish("t", "b")
        broker.drop = 1
        await hub.publish("off.1", "lost")  # the link was down: never arrived
        broker.resync_hub()
        await idle(hub)
        assert v1.messages[-1] == {"type": "gap", "topic": "off.1", "offset": 0, "epoch": ""}
        assert plain.closed == [(CloseCode.SERVICE_RESTART, "broker link lost")]
        assert plain.messages == ["a"]  # no notice exists in plain mode: the close is it
        push = centrifuge_pushes(cf)[-1]["push"]
        assert push == {"channel": "off.1",
                        "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
        assert [m["type"] for m in kept.messages] == ["message"] and not kept.closed
        assert not v1.closed and not cf.closed
        assert hub.stats.gaps == 1  # one topic told
        await hub.publish("off.1", "after")  # delivery goes on for those still there
        assert v1.messages[-1]["data"] == "after"
    finally:
        await hub.close()
