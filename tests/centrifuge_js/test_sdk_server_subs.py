"""centrifuge-js and server-side subscriptions against a real server: the personal
channel and the token's ``subs`` claim heard as the client's own ``subscribed`` and
``publication`` events, recovered after a cut network (JSON and Protobuf builds); and
the SDK's map and shared-poll subscriptions refused with Centrifugo's codes."""

from __future__ import annotations

import pytest

from tests.centrifuge_js.conftest import StartCf, cf_url, token
from tests.centrifuge_js.harness import SdkClient, sdk_behind_proxy, sdk_client


def server_offsets(sdk: SdkClient, channel: str) -> list[int]:
    return [e["offset"] for e in sdk.seen("server_publication",
                                          lambda e: e["channel"] == channel)]


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_server_side_subscriptions_deliver_and_recover(start_cf: StartCf,
                                                             protobuf: bool) -> None:
    srv = await start_cf(personal_channel=True)
    hub = srv.app.hub
    tok = token("alice", subs={"feed:a": {}})
    channels = ("#alice", "feed:a")
    async with sdk_behind_proxy(srv.port, token=tok, protobuf=protobuf) as (proxy, sdk):
        first = [await sdk.expect("server_subscribed") for _ in channels]
        assert {e["channel"] for e in first} == set(channels)
        assert all(e["recoverable"] and not e["wasRecovering"] for e in first)
        for i in range(2):
            for channel in channels:
                await hub.publish(channel, {"i": i})
        for _ in range(4):
            await sdk.expect("server_publication")
        proxy.cut()  # no close frame: the SDK sees the network go away
        await sdk.expect("connecting", lambda e: e["code"] != 0)
        for i in range(2, 5):
            for channel in channels:
                await hub.publish(channel, {"i": i})
        proxy.resume()
        again = [await sdk.expect("server_subscribed") for _ in channels]
        assert all(e["wasRecovering"] and e["recovered"] for e in again), again
        for _ in range(6):
            await sdk.expect("server_publication")
        await hub.publish("feed:a", {"i": 5})
        last = await sdk.expect("server_publication")
        assert (last["channel"], last["offset"], last["data"]) == ("feed:a", 6, {"i": 5})
        for channel in channels:  # every offset once, in order, and the data with it
            assert server_offsets(sdk, channel)[:5] == [1, 2, 3, 4, 5], channel
        got = [e["data"]["i"] for e in sdk.seen("server_publication",
                                               lambda e: e["channel"] == "#alice")]
        assert got == [0, 1, 2, 3, 4]
        assert not sdk.seen("server_unsubscribed")


@pytest.mark.parametrize(("kind", "code"), [
    ("map", 103), ("map_clients", 103), ("map_users", 103), ("shared_poll", 108)])
async def test_map_and_shared_poll_subscriptions_are_refused(start_cf: StartCf, kind: str,
                                                             code: int) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=token("bob")) as sdk:
        sdk.send("connect")
        await sdk.expect("connected")
        sdk.send("sub", channel="things:1", opts={"kind": kind})
        # a permanent subscribe error: the SDK unsubscribes with the server's code
        gone = await sdk.expect("unsubscribed")
        assert (gone["channel"], gone["code"]) == ("things:1", code), sdk.events
        sdk.send("sub", channel="things:2")  # the connection goes on
        assert (await sdk.expect("subscribed"))["channel"] == "things:2"
