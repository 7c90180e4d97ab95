"""centrifuge-js recovery against a real server, with a TCP proxy in between so the
tests can cut the network: missed publications recovered exactly once, a gap beyond
history reported as ``recovered: false``, a slow consumer closed and recovering."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from tests.centrifuge_js.conftest import StartCf, cf_url, token
from tests.centrifuge_js.harness import SdkClient, missed_while_cut, sdk_behind_proxy, sdk_client

RECOVER = {"recoverable": True, "positioned": True}


def offsets(sdk: SdkClient, channel: str) -> list[int]:
    return [e["offset"] for e in sdk.publications(channel)]


async def receive(sdk: SdkClient, n: int) -> None:
    for _ in range(n):
        await sdk.expect("publication")


async def test_drop_then_reconnect_recovers_missed_publications(start_cf: StartCf) -> None:
    srv = await start_cf()
    hub = srv.app.hub
    async with sdk_behind_proxy(srv.port, token=token("alice")) as (proxy, sdk):
        sdk.send("sub", channel="chat:r", opts=RECOVER)
        first = await sdk.expect("subscribed")
        assert first["wasRecovering"] is False
        for i in range(3):
            await hub.publish("chat:r", {"i": i})
        await receive(sdk, 3)
        await missed_while_cut(proxy, sdk, hub, "chat:r", ({"i": i} for i in range(3, 8)))
        again = await sdk.expect("subscribed")
        assert again["wasRecovering"] is True and again["recovered"] is True, again
        await receive(sdk, 5)
        await hub.publish("chat:r", {"i": 8})
        await receive(sdk, 1)
        assert offsets(sdk, "chat:r") == list(range(1, 10))
        assert [e["data"]["i"] for e in sdk.publications("chat:r")] == list(range(9))


async def test_gap_beyond_history_is_not_recovered(start_cf: StartCf) -> None:
    srv = await start_cf(history_size=3)
    hub = srv.app.hub
    async with sdk_behind_proxy(srv.port, token=token("alice")) as (proxy, sdk):
        sdk.send("sub", channel="chat:g", opts=RECOVER)
        await sdk.expect("subscribed")
        await hub.publish("chat:g", 0)
        await receive(sdk, 1)
        await missed_while_cut(proxy, sdk, hub, "chat:g", range(1, 11))  # history keeps 3
        again = await sdk.expect("subscribed")
        assert again["wasRecovering"] is True and again["recovered"] is False, again
        assert again["streamPosition"]["offset"] == 11, again
        await hub.publish("chat:g", 11)
        last = await sdk.expect("publication", lambda e: e["data"] == 11)
        assert last["offset"] == 12
        got = offsets(sdk, "chat:g")
        assert len(got) == len(set(got)), got  # none twice


async def test_slow_consumer_is_closed_then_recovers(start_cf: StartCf) -> None:
    """The proxy stops reading the server's bytes; past the outbound budget the server
    closes the connection; once reading resumes the SDK reconnects and recovers all."""
    srv = await start_cf(outbound_budget=64 * 1024, history_size=1000,
                         history_topic_max_bytes=0)
    hub = srv.app.hub
    # Incompressible: the SDK's `ws` negotiates permessage-deflate, and a run of "x"
    # would shrink under the outbound budget and never make it a slow consumer.
    blob = base64.b64encode(os.urandom(12_000)).decode()  # 16,000 characters
    n = 200  # 3.2 MB, then more until the server closes the connection
    async with sdk_behind_proxy(srv.port, token=token("alice")) as (proxy, sdk):
        sdk.send("sub", channel="chat:slow", opts=RECOVER)
        await sdk.expect("subscribed")
        proxy.reading.clear()
        for i in range(n):
            await hub.publish("chat:slow", {"i": i, "blob": blob})
        stats = srv.app.transport_stats
        assert stats is not None
        async with asyncio.timeout(10):
            while stats.slow_closes == 0:  # publishes go on until the server gives up
                await hub.publish("chat:slow", {"i": n, "blob": blob})
                n += 1
                await asyncio.sleep(0.01)
        for i in range(n, n + 5):  # published after the close: only recovery brings them
            await hub.publish("chat:slow", {"i": i, "blob": blob})
        n += 5
        proxy.resume()
        closed = await sdk.expect("connecting", lambda e: e["code"] != 0, timeout=15)
        assert (closed["code"], closed["reason"]) == (3008, "slow"), closed
        again = await sdk.expect("subscribed", timeout=15)
        assert again["wasRecovering"] is True and again["recovered"] is True, again
        assert again["hasRecoveredPublications"] is True, again
        async with asyncio.timeout(15):
            while len(sdk.publications("chat:slow")) < n:
                await sdk.expect("publication")
        assert offsets(sdk, "chat:slow") == list(range(1, n + 1))


@pytest.mark.parametrize("history_size", [100, 2], ids=["recovered", "beyond_history"])
async def test_unsubscribe_then_subscribe_again_recovers_from_the_saved_position(
        start_cf: StartCf, history_size: int) -> None:
    """centrifuge-js keeps a recoverable subscription's position across its own
    unsubscribe; subscribing again recovers what was published meanwhile, or (history
    no longer holding it) says ``recovered: false`` and goes on live (as upstream's
    recovery.test.ts checks against Centrifugo)."""
    srv = await start_cf(history_size=history_size)
    hub = srv.app.hub
    async with sdk_client(cf_url(srv.port), token=token("alice")) as sdk:
        sdk.send("connect")
        sdk.send("sub", channel="chat:u", opts=RECOVER)
        await sdk.expect("subscribed")
        await hub.publish("chat:u", {"seq": 1})
        await receive(sdk, 1)
        sdk.send("unsub", channel="chat:u")
        await sdk.expect("unsubscribed")
        for seq in range(2, 6):
            await hub.publish("chat:u", {"seq": seq})
        sdk.send("sub", channel="chat:u", opts=RECOVER)
        again = await sdk.expect("subscribed")
        assert again["wasRecovering"] is True, again
        assert again["recovered"] is (history_size > 4), again
        await hub.publish("chat:u", {"seq": 6})
        await sdk.expect("publication", lambda e: e["data"] == {"seq": 6})
        seqs = [e["data"]["seq"] for e in sdk.publications("chat:u")]
        assert seqs == ([1, 2, 3, 4, 5, 6] if history_size > 4 else [1, 6]), seqs
