"""Attack: server-side subscriptions at connect (issue 18), on memory and on Redis.

A Centrifuge connect may name server-side subscriptions to recover (its ``subs``) and a
token may carry a ``subs`` claim: each channel is a subscription and each recovering one
a history read, all before the connect reply. The attacker reconnects over and over
(`PACE`), each connect asking to recover from offset 0 on 32 channels, 8 of which
together hold far more history than one reply may carry (~300 KiB each); between
those, a connect with a token whose ``subs`` claim names 300 channels, and one asking
to recover 129 channels (the cap is 128).

Bounded: more channels than `max_subscriptions` is closed with 3505 before any is
subscribed; the recovered publications of one connect together stay within one reply's
caps (`history_reply_limit`, `history_reply_bytes`), and once those are spent the later
channels are not read at all (``recovered: false``, never a partial replay). The
bystander must stay fast and lose nothing, and the server's RSS must stay within bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.attack.harness import Server, attack_server, env_for_redis, measure, token

FULL = [f"room:full{i}" for i in range(8)]  # each holds ~300 KiB of history
EMPTY = [f"room:none{i}" for i in range(24)]  # 32 channels in all
OVER = [f"room:over{i}" for i in range(129)]  # one more than the cap
PAD = "x" * 50_000
PER_TOPIC = 6
REPLY_BYTES = 512 * 1024  # Settings.history_reply_bytes (the default)
CLAIMED = 300  # channels in the huge token's subs claim
# Seconds between two connects of one attacker loop. Upgrades are not charged to the
# HTTP rate limit, so nothing stops a faster loop but its own cost, which is that of
# its subscriptions: on Redis, with presence on every channel as in examples/chat, a
# channel is 2 SUBSCRIBE, 2 UNSUBSCRIBE and a presence join and leave, the same for a
# client-side subscribe. Measured on Redis with 128 channels per connect and a 0.25 s
# pace on this shared 2-core machine: client-side subscribes 20-24 connects in 6 s,
# bystander p99 39-50 ms; connect subs 32-36 connects (each is done sooner), p99
# 49-103 ms. Unpaced, both go past 50 ms (client-side 8 connects, p99 188 ms; connect
# subs 14-22, p99 370-420 ms, with the machine's load at 10). So this test takes 32
# channels per connect: it checks the bounds, not the machine.
PACE = 0.25
LARGE_HISTORY = {"PUBSOCKET_PUBLISH_BYTE_RATE": "0", "PUBSOCKET_HISTORY_TOPIC_MAX_BYTES": "0"}


async def fill(server: Server) -> None:
    async with await connect(
            f"{server.ws}/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token('filler')}"},
            max_size=None, open_timeout=10) as ws:
        n = 0
        for topic in FULL:
            for _ in range(PER_TOPIC):
                n += 1
                await ws.send(json.dumps({"action": "publish", "topic": topic, "id": n,
                                          "data": {"pad": PAD}}))
                async with asyncio.timeout(10):
                    reply = json.loads(await ws.recv())
                assert reply.get("type") == "ack", reply
                if n % 20 == 0:
                    await asyncio.sleep(0.25)  # under the publish rate limit


def _connect_frame(tok: str, channels: list[str]) -> str:
    subs = {ch: {"recover": True, "offset": 0, "epoch": ""} for ch in channels}
    return json.dumps({"id": 1, "connect": {"token": tok, "subs": subs}})


async def _one(server: Server, frame: str, tally: Counter[str]) -> None:
    """One connect: its reply's size and recovery outcomes, or how it was closed."""
    async with await connect(f"{server.ws}/connection/websocket", max_size=None,
                             open_timeout=10, close_timeout=1) as ws:
        await ws.send(frame)
        try:
            async with asyncio.timeout(10):
                raw = await ws.recv()
        except Exception:  # noqa: BLE001  # the close is the answer
            tally[f"close {ws.close_code}"] += 1
            return
        tally["connects"] += 1
        tally["max_reply"] = max(tally["max_reply"], len(raw))
        subs = json.loads(raw)["connect"].get("subs", {})
        tally["channels"] += len(subs)
        tally["recovered"] += sum(1 for s in subs.values() if s.get("recovered"))
        tally["publications"] += sum(len(s.get("publications", [])) for s in subs.values())


async def reconnects(server: Server, stop: asyncio.Event, tally: Counter[str]) -> str:
    """Two attacker loops reconnecting; of every three connects one recovers 32
    channels, one carries a token with a 300-channel ``subs`` claim, one asks to
    recover 129 channels itself."""
    asked = _connect_frame(token("attacker"), FULL + EMPTY)
    over = _connect_frame(token("attacker"), OVER)
    huge = json.dumps({"id": 1, "connect": {"token": token(
        "attacker", subs={f"r:{i}": {} for i in range(CLAIMED)})}})
    assert len(huge) < 8192  # within the token limit: the subscription cap refuses it

    async def loop() -> None:
        for n in range(10_000):  # bounded; the stop event ends it first
            if stop.is_set():
                return
            with contextlib.suppress(OSError):
                await _one(server, (asked, huge, over)[n % 3], tally)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PACE)

    await asyncio.gather(loop(), loop())
    return (f"{tally['connects']} connects answered ({tally['channels']} server-side "
            f"channels, {tally['recovered']} recovered with {tally['publications']} "
            f"publications, largest reply {tally['max_reply'] / 1024:.0f} KiB); "
            f"closed 3505 x{tally['close 3505']}")


async def run(server: Server, name: str) -> None:
    await fill(server)
    tally: Counter[str] = Counter()
    report = await measure(server, lambda srv, stop: reconnects(srv, stop, tally),
                           name=name, seconds=6)
    report.check()
    assert tally["connects"] >= 3 and tally["close 3505"] >= 4, dict(tally)
    # every connect was answered with all 32 channels, some history recovered, and
    # no reply went past one reply's byte cap (plus its JSON around the payloads)
    assert tally["channels"] == len(FULL + EMPTY) * tally["connects"], dict(tally)
    assert tally["recovered"] >= tally["connects"], dict(tally)
    assert tally["max_reply"] < REPLY_BYTES + 64 * 1024, dict(tally)


async def test_connect_subs_on_memory() -> None:
    async with attack_server(**LARGE_HISTORY) as server:
        await run(server, "server_subs/memory")


@pytest.mark.parametrize("broker", ["redis"])
async def test_connect_subs_on_redis(broker: Any, redis_url: str) -> None:
    async with attack_server(**env_for_redis(redis_url), **LARGE_HISTORY) as server:
        await run(server, f"server_subs/{broker}")
