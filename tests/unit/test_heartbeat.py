"""The v1 heartbeat without sockets: the command's parsing, the codec's frames, and the
hub's one sweep driving real `Session`s over in-memory peers."""

from __future__ import annotations

import asyncio

import pytest

from pubsocket import Hub
from pubsocket.codecs import PLAIN, V1
from pubsocket.codecs.json_commands import parse_json_command
from pubsocket.errors import ErrorCode, ProtocolViolation
from pubsocket.hub.session import Session
from pubsocket.protocol import Heartbeat
from tests.conftest import make_settings
from tests.unit.test_session import MemoryPeer

PING = {"type": "ping"}


def test_heartbeat_is_a_v1_action_only() -> None:
    assert parse_json_command('{"action":"heartbeat","id":3}', extended=True) == Heartbeat(3)
    with pytest.raises(ProtocolViolation) as err:  # the seed's plain mode is unchanged
        parse_json_command('{"action":"heartbeat","id":3}', extended=False)
    assert err.value.code is ErrorCode.BAD_ACTION
    assert V1.heartbeat(25) == b'{"type":"ping"}'
    assert V1.heartbeat_on(Heartbeat(3), 25) == b'{"type":"ack","id":3,"interval":25}'
    assert V1.heartbeat_on(Heartbeat(4), 0.5) == b'{"type":"ack","id":4,"interval":0.5}'
    assert PLAIN.heartbeat(25) is None


async def test_one_sweep_pings_only_those_that_asked_once_per_interval() -> None:
    hub = Hub(make_settings(heartbeat=0.1))
    await hub.start()
    asker, twice, silent = MemoryPeer(), MemoryPeer(), MemoryPeer()
    sessions = [Session(hub, p, hub.settings, codec=V1) for p in (asker, twice, silent)]
    asker.send({"action": "heartbeat", "id": 1})
    twice.send(*({"action": "heartbeat", "id": i} for i in range(10)))
    runs = [asyncio.create_task(s.run()) for s in sessions]
    await asyncio.sleep(0.55)
    assert asker.received[0] == {"type": "ack", "id": 1, "interval": 0.1}
    for peer in (asker, twice):
        pings = [m for m in peer.received if m == PING]
        assert 4 <= len(pings) <= 6, len(pings)  # 0.55 s / 0.1 s, asked once or ten times
    assert silent.received == []  # never asked: nothing new on the wire
    assert len(hub.heartbeat.sessions) == 2

    asker.hang_up()
    twice.hang_up()
    await asyncio.sleep(0.05)
    assert hub.heartbeat.sessions == set()  # on_close took them out of the sweep
    seen = len(asker.frames)
    await asyncio.sleep(0.25)
    assert len(asker.frames) == seen
    assert hub.heartbeat._handle is None  # the timer stopped with nobody left
    silent.hang_up()
    await asyncio.gather(*runs)
    await hub.close()


async def test_heartbeat_off_answers_zero_and_pings_nobody() -> None:
    hub = Hub(make_settings(heartbeat=0))
    await hub.start()
    peer = MemoryPeer()
    session = Session(hub, peer, hub.settings, codec=V1)
    peer.send({"action": "heartbeat", "id": "h"})
    run = asyncio.create_task(session.run())
    await asyncio.sleep(0.2)
    assert peer.received == [{"type": "ack", "id": "h", "interval": 0}]
    assert hub.heartbeat.sessions == set()
    peer.hang_up()
    await run
    await hub.close()
