"""`pubsocket.client` presence notices (`Join`/`Leave`) and `on_error`, against a real
server with presence on every topic (`chat_app`)."""

from __future__ import annotations

import asyncio
from typing import Any

from pubsocket import client as pc
from pubsocket.client import Event, Join, Leave, Message
from tests.client.helpers import chat_app, take, token, until, url


def about(events: list[Any], user: str) -> list[Any]:
    """The presence events of `user` and every message (our own join is left out)."""
    return [e for e in events if not isinstance(e, Join | Leave) or e.user == user]


async def test_callbacks_see_the_join_then_the_leave_of_another_user(serve: Any) -> None:
    srv = await serve(chat_app())
    seen: list[Any] = []

    async def on_leave(event: Leave) -> None:
        await asyncio.sleep(0)
        seen.append(event)

    async with pc.connect(url(srv), token=token("alice")) as alice:
        await alice.subscribe("room", on_join=seen.append, on_leave=on_leave)
        async with pc.connect(url(srv), token=token("bob", info={"name": "Bob"})) as bob:
            await bob.subscribe("room")
            await until(lambda: any(isinstance(e, Join) and e.user == "bob" for e in seen))
            members = await alice.presence("room")
            bob_id = next(cid for cid, m in members.items() if m.user == "bob")
        await until(lambda: any(isinstance(e, Leave) for e in seen))
    assert about(seen, "bob") == [Join("room", "bob", {"name": "Bob"}, bob_id),
                                  Leave("room", "bob", None, bob_id)]
    assert {e.user for e in seen} <= {"alice", "bob"}


async def test_presence_events_iterator_yields_them_in_order_with_messages(serve: Any
                                                                          ) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token("alice")) as alice, \
            pc.connect(url(srv), token=token("carol")) as carol:
        sub = await alice.subscribe("room", presence_events=True)
        plain = await carol.subscribe("room")  # the default: messages and gaps only
        async with pc.connect(url(srv), token=token("bob")) as bob:
            await bob.subscribe("room")
            await bob.publish("room", "hi")
        await carol.publish("room", "bye")
        got: list[Event] = []
        async with asyncio.timeout(5):
            async for event in sub:
                got.append(event)
                if isinstance(event, Message) and event.data == "bye":
                    break
        assert [(type(e).__name__, getattr(e, "user", None) or getattr(e, "data", None))
                for e in about(got, "bob")] == [
            ("Join", "bob"), ("Message", "hi"), ("Leave", "bob"), ("Message", "bye")]
        assert {e.user for e in got if isinstance(e, Join | Leave)} <= {"alice", "bob", "carol"}
        assert [(m.data, m.offset, m.publisher and m.publisher.user)
                for m in await take(plain, 2)] == [("hi", 1, "bob"), ("bye", 2, "carol")]


async def test_on_error_receives_unsubscribed_and_not_a_plain_unsubscribe(serve: Any
                                                                         ) -> None:
    srv = await serve(chat_app())
    errors: list[BaseException] = []
    async with pc.connect(url(srv), token=token("alice")) as client:
        await client.subscribe("ops", on_message=print, on_error=errors.append)
        quiet = await client.subscribe("calm", on_error=errors.append)
        await quiet.unsubscribe()
        await srv.app.hub.unsubscribe_user("alice", "ops")
        await until(lambda: bool(errors))
        await asyncio.sleep(0.05)  # room for a (wrong) second call
    assert len(errors) == 1 and isinstance(errors[0], pc.Unsubscribed)
    assert errors[0].topic == "ops"


async def test_on_error_receives_overflow_after_the_queued_messages(serve: Any) -> None:
    srv = await serve(chat_app())
    gate = asyncio.Event()
    data: list[Any] = []
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def on_message(message: Message) -> None:
        await gate.wait()  # a slow consumer: the queue (1 event) fills up
        data.append(message.data)

    async def on_error(error: BaseException) -> None:
        failed.set_result(error)

    async with pc.connect(url(srv), token=token("alice"), queue_size=1) as client:
        sub = await client.subscribe("room", on_message=on_message, on_error=on_error)
        for i in range(3):
            await client.publish("room", i)
        await until(lambda: not sub.active)
        gate.set()
        async with asyncio.timeout(5):
            error = await failed
    assert isinstance(error, pc.Overflow)
    assert data == [0, 1]  # the one being handled and the one queued, then the error
