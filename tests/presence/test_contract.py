"""The `Presence` contract, the same tests on memory and on a real Redis (two "nodes")."""

from __future__ import annotations

from pubsocket.presence import ClientInfo, Removed, Stats
from tests.presence.conftest import MakePresence


async def test_add_get_stats_remove(make_node: MakePresence) -> None:
    node = await make_node()
    info = {"name": "Ålice", "tags": [1, 2.5, None], "deep": {"x": True}}
    assert await node.add("room", ClientInfo("c1", "alice", info)) is True
    assert await node.get("room") == {"c1": ClientInfo("c1", "alice", info)}
    assert await node.stats("room") == Stats(1, 1)
    assert await node.remove("room", "c1") == Removed("alice", True)
    assert await node.get("room") == {}
    assert await node.stats("room") == Stats(0, 0)
    assert await node.remove("room", "c1") is None  # idempotent


async def test_a_channel_info_is_kept_per_topic(make_node: MakePresence) -> None:
    """A Centrifugo ``subs`` claim's ``info``: the client's in that topic only."""
    a, b = await make_node(), await make_node()
    with_info = ClientInfo("c1", "alice", {"n": 1}, {"seat": [7, "b"]})
    assert await a.add("room", with_info) is True
    assert await a.add("hall", ClientInfo("c1", "alice", {"n": 1})) is True
    assert (await b.get("room"))["c1"] == with_info  # seen from the other node too
    assert (await b.get("hall"))["c1"].chan_info is None


async def test_unknown_topic_is_empty(make_node: MakePresence) -> None:
    node = await make_node()
    assert await node.get("nobody") == {}
    assert await node.stats("nobody") == Stats(0, 0)
    assert await node.remove("nobody", "c1") is None


async def test_add_is_idempotent_per_client(make_node: MakePresence) -> None:
    node = await make_node()
    assert await node.add("room", ClientInfo("c1", "alice")) is True
    assert await node.add("room", ClientInfo("c1", "alice")) is False
    assert await node.stats("room") == Stats(1, 1)
    assert await node.remove("room", "c1") == Removed("alice", True)


async def test_first_and_last_of_user_across_nodes(make_node: MakePresence) -> None:
    a, b = await make_node(), await make_node()
    assert await a.add("room", ClientInfo("a1", "alice")) is True
    assert await b.add("room", ClientInfo("b1", "alice")) is False  # second tab, other node
    assert await b.add("room", ClientInfo("b2", "bob")) is True
    assert await a.stats("room") == await b.stats("room") == Stats(3, 2)
    assert set(await b.get("room")) == {"a1", "b1", "b2"}
    assert await a.remove("room", "a1") == Removed("alice", False)  # alice still has b1
    assert await a.remove("room", "b1") == Removed("alice", True)  # any node may remove
    assert await b.remove("room", "b2") == Removed("bob", True)
    assert await a.stats("room") == Stats(0, 0)


async def test_anonymous_clients_are_their_own_users(make_node: MakePresence) -> None:
    node = await make_node()
    assert await node.add("room", ClientInfo("x1", None)) is True
    assert await node.add("room", ClientInfo("x2", None)) is True
    assert await node.add("room", ClientInfo("u1", "alice")) is True
    assert await node.stats("room") == Stats(3, 3)
    assert await node.remove("room", "x1") == Removed(None, True)
    assert (await node.get("room"))["x2"] == ClientInfo("x2", None, None)


async def test_topics_are_independent(make_node: MakePresence) -> None:
    node = await make_node()
    assert await node.add("a", ClientInfo("c1", "alice")) is True
    assert await node.add("b", ClientInfo("c1", "alice")) is True  # same client, other topic
    assert await node.remove("a", "c1") == Removed("alice", True)
    assert await node.get("b") == {"c1": ClientInfo("c1", "alice")}


async def test_odd_user_names_do_not_collide(make_node: MakePresence) -> None:
    node = await make_node()
    # "c:x" as a user must not be confused with the anonymous client "x".
    assert await node.add("room", ClientInfo("x", None)) is True
    assert await node.add("room", ClientInfo("y", "c:x")) is True
    assert await node.add("room", ClientInfo("z", "u:")) is True
    assert await node.stats("room") == Stats(3, 3)


async def test_close_removes_only_this_nodes_entries(make_node: MakePresence) -> None:
    a, b = await make_node(), await make_node()
    await a.add("room", ClientInfo("a1", "alice"))
    await a.add("other", ClientInfo("a2", "carol"))
    await b.add("room", ClientInfo("b1", "alice"))
    await a.close()
    await a.close()  # idempotent
    assert await b.get("room") == {"b1": ClientInfo("b1", "alice")}
    assert await b.get("other") == {}
    assert await b.remove("room", "b1") == Removed("alice", True)  # counts stayed right


async def test_many_clients(make_node: MakePresence) -> None:
    a, b = await make_node(), await make_node()
    for i in range(300):
        node = a if i % 2 else b
        assert await node.add("big", ClientInfo(f"c{i}", f"u{i % 100}")) is (i < 100)
    assert await a.stats("big") == Stats(300, 100)
    assert len(await b.get("big")) == 300
    lasts = [(await (a if i % 2 else b).remove("big", f"c{i}")) for i in range(300)]
    assert sum(1 for r in lasts if r is not None and r.last_of_user) == 100
    assert await a.stats("big") == Stats(0, 0)
