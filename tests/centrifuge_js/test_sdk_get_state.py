"""centrifuge-js's ``getState`` (5.x) against a real server, the scenarios of upstream's
getstate.test.ts: the SDK asks the app for a stream position before the first subscribe
and recovers from it; a reconnect that recovers does not ask again; one whose position
history no longer holds is refused (112, the SDK sets the reject-unrecovered flag) and
the SDK asks again, then subscribes from the new position."""

from __future__ import annotations

from tests.centrifuge_js.conftest import StartCf, token
from tests.centrifuge_js.harness import missed_while_cut, sdk_behind_proxy

STATE = {"getState": True}


async def test_get_state_position_is_recovered_from_and_not_asked_again(
        start_cf: StartCf) -> None:
    srv = await start_cf()
    hub = srv.app.hub
    for i in range(3):  # before the subscription: only getState's position brings them
        await hub.publish("chat:gs", {"i": i})
    async with sdk_behind_proxy(srv.port, token=token("alice")) as (proxy, sdk):
        sdk.send("sub", channel="chat:gs", opts=STATE)
        await sdk.expect("get_state")
        sdk.send("state", channel="chat:gs", offset=0, epoch="")  # "" = any epoch
        first = await sdk.expect("subscribed")
        assert first["wasRecovering"] is True and first["recovered"] is True, first
        for _ in range(3):
            await sdk.expect("publication")
        await missed_while_cut(proxy, sdk, hub, "chat:gs", [{"i": 3}])
        again = await sdk.expect("subscribed")
        assert again["recovered"] is True, again
        await sdk.expect("publication", lambda e: e["data"] == {"i": 3})
        assert [e["offset"] for e in sdk.publications("chat:gs")] == [1, 2, 3, 4]
        assert len(sdk.seen("get_state")) == 1  # the recovery needed no new state


async def test_get_state_is_asked_again_when_the_position_is_unrecoverable(
        start_cf: StartCf) -> None:
    srv = await start_cf(history_size=2)
    hub = srv.app.hub
    async with sdk_behind_proxy(srv.port, token=token("alice")) as (proxy, sdk):
        sdk.send("sub", channel="chat:gsu", opts=STATE)
        await sdk.expect("get_state")
        sdk.send("state", channel="chat:gsu", offset=0, epoch="")
        first = await sdk.expect("subscribed")
        epoch = first["streamPosition"]["epoch"]
        # history keeps 2: offset 0 cannot be continued from
        await missed_while_cut(proxy, sdk, hub, "chat:gsu", ({"i": i} for i in range(5)))
        await sdk.expect("get_state")  # after the server's 112
        sdk.send("state", channel="chat:gsu", offset=5, epoch=epoch)  # the app's state
        again = await sdk.expect("subscribed")
        assert again["streamPosition"] == {"offset": 5, "epoch": epoch}, again
        await hub.publish("chat:gsu", {"i": 5})
        live = await sdk.expect("publication")
        assert (live["data"], live["offset"]) == ({"i": 5}, 6)
        assert not [e for e in sdk.publications("chat:gsu") if e["offset"] < 6]
