"""One refusal, one place: the same refused operation gives the matching error at every
front door of one real server, with real clients: the pubsocket.v1 socket (`websockets`),
the Centrifuge socket (centrifuge-python), our HTTP API (urllib) and Centrifugo's server
API (PyPI ``cent``).

Each row names the `OpError` type the operations layer raises; what each door must
answer is read from that dialect's one table (`hub.operations.SOCKET`, then
`protocols.centrifuge.codes` for the Centrifuge socket; `ops.errors.HTTP`;
`ops.errors.CENTRIFUGO`), so a door that answered a refusal its own way, or a table that
drifted, fails here. Doors a refusal cannot reach are left out of its row, with why.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from cent import (
    AsyncClient,
    CentApiResponseError,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
)
from websockets.asyncio.client import ClientConnection, connect

from centrifuge import Client, ReplyError
from centrifuge import StreamPosition as SdkPosition
from pubsocket import App, pubsub
from pubsocket.errors import (
    LimitExceeded,
    NotAvailable,
    OpError,
    PermissionDenied,
    UnrecoverablePosition,
    lookup,
)
from pubsocket.hub.operations import SOCKET
from pubsocket.ops.errors import CENTRIFUGO, HTTP
from pubsocket.protocols.centrifuge.codes import error_code
from tests.app.test_http import ahttp
from tests.centrifuge.conftest import PATH, Events, sub_events, token
from tests.conftest import API_KEY, Running, make_settings

# The user may publish, read history and presence everywhere but under "secret:".
OPEN = ["open:*", "nohist:*", "room:*"]
TOPICS = {"subscribe": ["*"], "publish": OPEN, "history": OPEN, "presence": OPEN}
CAP = 2  # subscriptions per connection and commands per server API batch
OTHER_EPOCH = "not-the-epoch"


def one_place_app(broker: str) -> App:
    """v1 at /ws/chat and Centrifuge at its SDK path on one hub over `broker`: presence
    for room:*, no history for nohist:*, at most `CAP` subscriptions and batch commands."""
    app = App(make_settings(broker=broker, max_subscriptions=CAP, server_api_batch_max=CAP))
    pubsub("/ws/chat", app=app, secured=True, presence=["room:*"],
           history={"nohist:*": None})
    pubsub(PATH, app=app, protocol="centrifuge", secured=True)
    return app


@dataclass(frozen=True)
class Op:
    """One operation as every door can ask it."""

    kind: str  # publish | history | presence | presence_stats | over_cap
    topic: str = ""
    since: tuple[int, str] | None = None


Observed = Any  # a door's error (its own shape), or None when the operation succeeded


@dataclass
class Doors:
    """The four front doors of one server, with connected clients."""

    srv: Running
    v1: ClientConnection
    sdk: Client
    api: AsyncClient
    bearer: str
    ids: list[int] = field(default_factory=lambda: [0])

    # -- pubsocket.v1 over a WebSocket: the error reply's code -------------------------
    async def v1_door(self, op: Op) -> Observed:
        if op.kind == "over_cap":
            replies = [await self._v1(action="subscribe", topic=f"open:cap{i}")
                       for i in range(CAP + 1)]
            assert [r["type"] for r in replies[:CAP]] == ["ack"] * CAP
            reply = replies[-1]
        else:
            cmd: dict[str, Any] = {"action": op.kind, "topic": op.topic}
            if op.kind == "publish":
                cmd["data"] = {"n": 1}
            if op.since is not None:
                cmd["since"] = {"offset": op.since[0], "epoch": op.since[1]}
            reply = await self._v1(**cmd)
        return reply["code"] if reply["type"] == "error" else None

    async def _v1(self, **cmd: Any) -> dict[str, Any]:
        self.ids[0] += 1
        cmd["id"] = self.ids[0]
        await self.v1.send(json.dumps(cmd))
        async with asyncio.timeout(5):
            while True:
                reply: dict[str, Any] = json.loads(await self.v1.recv())
                if reply.get("id") == cmd["id"]:
                    return reply

    # -- Centrifuge over a WebSocket (centrifuge-python): the error code ---------------
    async def centrifuge_door(self, op: Op) -> Observed:
        sdk = self.sdk
        try:
            if op.kind == "over_cap":
                return await self._cf_over_cap()
            if op.kind == "publish":
                await sdk.publish(op.topic, {"n": 1})
            elif op.kind == "history":
                since = None if op.since is None else SdkPosition(*op.since)
                await sdk.history(op.topic, limit=10, since=since)
            elif op.kind == "presence":
                await sdk.presence(op.topic)
            else:
                await sdk.presence_stats(op.topic)
        except ReplyError as exc:
            return exc.code
        return None

    async def _cf_over_cap(self) -> Observed:
        events = Events()
        subs = [self.sdk.new_subscription(f"open:cfcap{i}", events=sub_events(events))
                for i in range(CAP + 1)]
        for sub in subs[:CAP]:
            await sub.subscribe()
            await events.next("subscribed")
        await subs[-1].subscribe()
        return (await events.next("unsubscribed")).code  # a refused subscribe ends it

    # -- our HTTP API (Bearer token): status and error code -----------------------------
    async def http_door(self, op: Op) -> Observed:
        headers = {"Authorization": f"Bearer {self.bearer}"}
        if op.kind == "publish":
            status, _, body = await ahttp(
                "POST", self.srv.http + "/api/publish",
                json.dumps({"topic": op.topic, "data": {"n": 1}}).encode(),
                {**headers, "Content-Type": "application/json"})
        else:
            query: dict[str, Any] = {"topic": op.topic}
            if op.kind == "presence_stats":
                query["stats"] = 1
            if op.since is not None:
                query.update(since=op.since[0], epoch=op.since[1])
            path = "/api/history" if op.kind == "history" else "/api/presence"
            status, _, body = await ahttp(
                "GET", f"{self.srv.http}{path}?{urllib.parse.urlencode(query)}",
                headers=headers)
        return None if status == 200 else (status, json.loads(body)["error"])

    # -- Centrifugo's server API (cent): the error code ---------------------------------
    async def server_api_door(self, op: Op) -> Observed:
        since = None if op.since is None else StreamPosition(offset=op.since[0],
                                                              epoch=op.since[1])
        requests: dict[str, Callable[[], Awaitable[Any]]] = {
            "publish": lambda: self.api.publish(PublishRequest(channel=op.topic,
                                                               data={"n": 1})),
            "history": lambda: self.api.history(HistoryRequest(channel=op.topic, limit=10,
                                                               since=since)),
            "presence": lambda: self.api.presence(PresenceRequest(channel=op.topic)),
            "presence_stats": lambda: self.api.presence_stats(
                PresenceStatsRequest(channel=op.topic)),
        }
        if op.kind == "over_cap":
            # cent 5 cannot read a batch's own error (it expects "replies"): plain HTTP
            command = {"presence_stats": {"channel": "room:x"}}
            status, _, body = await ahttp(
                "POST", self.srv.http + "/api/batch",
                json.dumps({"commands": [command] * (CAP + 1)}).encode(),
                {"X-API-Key": API_KEY, "Content-Type": "application/json"})
            assert status == 200
            return json.loads(body).get("error", {}).get("code")
        try:
            await requests[op.kind]()
        except CentApiResponseError as exc:
            return exc.code
        return None


# What each door must answer for a refusal of type `error`: read from its one table.
EXPECTED: dict[str, Callable[[OpError], Observed]] = {
    "v1": lambda exc: str(lookup(SOCKET, exc)),
    "centrifuge": lambda exc: error_code(lookup(SOCKET, exc)),
    "http": lambda exc: (lookup(HTTP, exc)[0], str(lookup(HTTP, exc)[1])),
    "server_api": lambda exc: lookup(CENTRIFUGO, exc),
}
ALL = tuple(EXPECTED)
NOT_THE_SERVER = ("v1", "centrifuge", "http")  # the server API acts as the server:
# no topic permission applies to it (as in Centrifugo)


@dataclass(frozen=True)
class Refusal:
    name: str
    op: Op
    error: type[OpError]
    doors: tuple[str, ...] = ALL
    # Doors where the dialect answers instead of refusing (documented): they must succeed.
    answered: tuple[str, ...] = ()


REFUSALS = [
    Refusal("publish forbidden", Op("publish", "secret:a"), PermissionDenied, NOT_THE_SERVER),
    Refusal("history forbidden", Op("history", "secret:a"), PermissionDenied, NOT_THE_SERVER),
    Refusal("presence forbidden", Op("presence", "secret:a"), PermissionDenied,
            NOT_THE_SERVER),
    Refusal("presence off", Op("presence", "open:a"), NotAvailable),
    Refusal("presence stats off", Op("presence_stats", "open:a"), NotAvailable),
    # pubsocket's dialects answer an empty page at position 0 where no history is kept;
    # Centrifugo's refuse it (docs/centrifuge.md).
    Refusal("history off", Op("history", "nohist:a"), NotAvailable,
            ("centrifuge", "server_api"), answered=("v1", "http")),
    Refusal("unrecoverable position", Op("history", "open:h", since=(1, OTHER_EPOCH)),
            UnrecoverablePosition),
    # Our HTTP API has no count cap a request can pass: the sockets' is the
    # subscriptions per connection, the server API's the commands per batch.
    Refusal("count cap", Op("over_cap"), LimitExceeded, ("v1", "centrifuge", "server_api")),
]


@pytest.fixture(params=["memory", "redis"])
async def doors(request: pytest.FixtureRequest,
                serve: Callable[[App], Awaitable[Running]]) -> AsyncIterator[Doors]:
    """The four doors of one server, on the memory broker (history and presence answer
    inline) and on real Redis (every read awaited)."""
    broker = "memory://"
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        broker = redis_url + f"?prefix=one-{uuid.uuid4().hex[:8]}:"
    srv = await serve(one_place_app(broker))
    await srv.app.hub.publish("open:h", {"n": 0})  # a position to be far from
    bearer = token("u1", topics=TOPICS)
    async with AsyncExitStack() as stack:
        v1 = await stack.enter_async_context(connect(
            f"{srv.ws}/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {bearer}"}))
        sdk = Client(srv.ws + PATH, token=bearer, timeout=5)
        await sdk.connect()
        stack.push_async_callback(sdk.disconnect)
        api = await stack.enter_async_context(AsyncClient(srv.http + "/api", API_KEY,
                                                          timeout=5))
        yield Doors(srv, v1, sdk, api, bearer)


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.name)
async def test_the_same_refusal_answers_the_same_at_every_door(
        doors: Doors, refusal: Refusal) -> None:
    run = {"v1": doors.v1_door, "centrifuge": doors.centrifuge_door,
           "http": doors.http_door, "server_api": doors.server_api_door}
    exc = refusal.error()
    for door in refusal.doors:
        observed = await run[door](refusal.op)
        expected = EXPECTED[door](exc)
        assert observed == expected, (refusal.name, door, observed, expected)
    for door in refusal.answered:
        assert await run[door](refusal.op) is None, (refusal.name, door)


def test_both_centrifuge_doors_use_the_same_numbers() -> None:
    """The Centrifuge socket (SOCKET, then the protocol's codes) and Centrifugo's server
    API (CENTRIFUGO) give every failure the same number, but an invalid topic: the
    socket says 102 (unknown channel, as Centrifuge does for a channel it cannot
    route), the server API 107 (a malformed request field, as Centrifugo's API does)."""
    from pubsocket.errors import InvalidTopic

    for cls in SOCKET:
        exc = cls()
        socket, server = error_code(lookup(SOCKET, exc)), lookup(CENTRIFUGO, exc)
        if cls is InvalidTopic:
            assert (socket, server) == (102, 107)
        else:
            assert socket == server, cls.__name__
