"""`info` and `channels` answer for the whole cluster (hub/cluster.py): three
`pubsocket serve` processes on one real Redis, WebSocket subscribers on each, the server
API asked of any node through Centrifugo's dialect (raw HTTP and PyPI ``cent``). A
SIGKILLed node leaves `info` within the registry's expiry and `channels` does not wait
for it; a SIGSTOPped node (alive for Redis, deaf) makes `channels` answer error 100
within the survey timeout instead of hanging."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
import uuid
from contextlib import AbstractContextManager, AsyncExitStack
from typing import Any

import pytest
from cent import AsyncClient, CentApiResponseError, ChannelsRequest, InfoRequest

from tests.conftest import API_KEY
from tests.integration.spawn import ROOT, Proc, spawn
from tests.integration.test_cross_node import subscriber

APP = ROOT / "tests/integration/apps/hub"  # pubsub("/ws/chat"), open, server API on
INTERVAL = 0.3  # seconds between node infos: a killed node is gone after 3 of them
SURVEY_TIMEOUT = 4.0  # seconds (first test): long enough that waiting for it shows
DEAF_TIMEOUT = 1.5  # seconds (second test): unlike the 1 s default, so it must be read


@pytest.fixture
def url(redis_url: str) -> str:
    return f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"


def api(port: int, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Centrifugo's server API, raw: the reply's JSON (``result`` or ``error``)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{method}", data=json.dumps(body or {}).encode(),
        method="POST", headers={"Content-Type": "application/json", "X-API-Key": API_KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def nodes_seen(port: int, want: int, timeout: float = 10) -> list[dict[str, Any]]:
    """`info`'s nodes once it lists `want` of them (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            nodes = (await asyncio.to_thread(api, port, "info"))["result"]["nodes"]
            if len(nodes) == want:
                return nodes  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_info_and_channels_cover_every_node_and_forget_a_killed_one(url: str) -> None:
    def node() -> AbstractContextManager[Proc]:
        return spawn(APP, PUBSOCKET_BROKER=url, PUBSOCKET_CLUSTER_INFO_INTERVAL=str(INTERVAL),
                     PUBSOCKET_CLUSTER_SURVEY_TIMEOUT=str(SURVEY_TIMEOUT))

    with node() as a, node() as b, node() as c:
        async with AsyncExitStack() as stack:
            for port, topic in ((a.port, "room"), (b.port, "room"), (b.port, "room"),
                                (c.port, "lobby"), (c.port, "room")):
                ws = await subscriber(port, topic)
                stack.push_async_callback(ws.close)
            await asyncio.sleep(INTERVAL * 2)  # every node announced its subscriptions
            nodes = await nodes_seen(a.port, 3)
            assert len({n["uid"] for n in nodes}) == 3
            by_clients = sorted((n["num_clients"], n["num_channels"], n["num_subs"])
                                for n in nodes)
            assert by_clients == [(1, 1, 1), (2, 1, 2), (2, 2, 2)], nodes
            assert all(n["version"] == nodes[0]["version"] and n["uptime"] >= 0
                       for n in nodes)
            for port in (a.port, b.port, c.port):  # any node answers for all
                result = (await asyncio.to_thread(api, port, "channels"))["result"]
                assert result == {"channels": {"room": {"num_clients": 4},
                                               "lobby": {"num_clients": 1}}}
            async with AsyncClient(f"http://127.0.0.1:{b.port}/api", API_KEY,
                                   timeout=SURVEY_TIMEOUT * 2) as cent:
                info = await cent.info(InfoRequest())
                assert sorted(n.uid for n in info.nodes) == sorted(n["uid"] for n in nodes)
                found = await cent.channels(ChannelsRequest(pattern="lob*"))
                assert {k: v.num_clients for k, v in found.channels.items()} == {"lobby": 1}

                c.popen.kill()  # SIGKILL: no node_leave; Redis drops its subscriptions
                await asyncio.to_thread(c.popen.wait, 10)
                started = time.monotonic()
                found = await cent.channels(ChannelsRequest())  # C not waited for
                # Half the survey timeout a wait for C would take; load adds seconds.
                assert time.monotonic() - started < SURVEY_TIMEOUT / 2
                assert {k: v.num_clients for k, v in found.channels.items()} == {"room": 3}
                started = time.monotonic()
                await nodes_seen(b.port, 2)
                assert time.monotonic() - started < INTERVAL * 3 + 2.0  # the expiry


async def test_a_deaf_node_makes_channels_fail_within_the_timeout(url: str) -> None:
    """SIGSTOP: Redis still counts the node's subscription but it never answers. The
    survey gives up after `cluster_survey_timeout` and, as Centrifugo, answers an error
    (100) rather than a partial list; once the node runs again, all is well."""
    def node() -> AbstractContextManager[Proc]:
        return spawn(APP, PUBSOCKET_BROKER=url,
                     PUBSOCKET_CLUSTER_SURVEY_TIMEOUT=str(DEAF_TIMEOUT))

    with node() as a, node() as b:
        ws = await subscriber(b.port, "room")
        try:
            await nodes_seen(a.port, 2)
            assert (await asyncio.to_thread(api, a.port, "channels"))["result"] == {
                "channels": {"room": {"num_clients": 1}}}
            b.popen.send_signal(signal.SIGSTOP)
            try:
                async with AsyncClient(f"http://127.0.0.1:{a.port}/api", API_KEY,
                                       timeout=10) as cent:
                    started = time.monotonic()
                    with pytest.raises(CentApiResponseError) as refused:
                        await cent.channels(ChannelsRequest())
                    elapsed = time.monotonic() - started
                assert refused.value.code == 100
                # Not before the timeout set (so not the 1 s default); 2.5 s of slack for load.
                assert DEAF_TIMEOUT <= elapsed < DEAF_TIMEOUT + 2.5, elapsed
                assert len((await asyncio.to_thread(api, a.port, "info"))["result"][
                    "nodes"]) == 2  # still known: heard from within the expiry
            finally:
                b.popen.send_signal(signal.SIGCONT)
            result = (await asyncio.to_thread(api, a.port, "channels"))["result"]
            assert result == {"channels": {"room": {"num_clients": 1}}}
        finally:
            await ws.close()


async def test_a_single_node_without_redis_answers_for_itself() -> None:
    with spawn(APP) as solo:
        ws = await subscriber(solo.port, "room")
        try:
            nodes = (await asyncio.to_thread(api, solo.port, "info"))["result"]["nodes"]
            assert len(nodes) == 1
            assert (await asyncio.to_thread(api, solo.port, "channels"))["result"] == {
                "channels": {"room": {"num_clients": 1}}}
        finally:
            await ws.close()
