"""Attack: a flood of cookie upgrades against an endpoint with a connection hook.

The target is a project whose ``/ws/chat`` takes a session-cookie hook (a 20 ms async
"session store" lookup) beside tokens. The attacker keeps 20 upgrades in flight (about
1 600 a second here): half carry a foreign Origin (refused before the hook, so they
must cost nothing), half the right Origin and a made-up session (the hook runs and
refuses). The bystander (a token
client on the same endpoint) must stay fast and lose nothing, the server's memory
bounded, and every attempt must be refused with the documented status.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from pathlib import Path

import websockets
from websockets.asyncio.client import connect

from tests.attack.harness import Server, attack_server, measure

ROUTES = '''
import asyncio
from pubsocket import pubsub

SESSIONS = {"s-real": "alice"}

async def from_session(request):
    await asyncio.sleep(0.02)  # a session-store round trip
    return SESSIONS.get(request.cookies.get("sid", ""))

pubsub("/ws/chat", secured=True, authenticate=from_session)
'''
IN_FLIGHT = 20


def project(tmp_path: Path) -> Path:
    routes = tmp_path / "app" / "src" / "routes"
    routes.mkdir(parents=True)
    (routes / "hub.py").write_text(textwrap.dedent(ROUTES))
    return tmp_path / "app"


async def test_cookie_upgrade_flood_is_refused_without_hurting_the_bystander(
        tmp_path: Path) -> None:
    statuses: Counter[int | str] = Counter()

    async def one(server: Server, n: int) -> None:
        foreign = n % 2 == 0
        origin = "http://evil.example" if foreign else server.http
        try:
            async with connect(f"{server.ws}/ws/chat", origin=origin,  # type: ignore[arg-type]
                               additional_headers={"Cookie": f"sid=guess-{n}"},
                               open_timeout=10):
                statuses["opened"] += 1
        except websockets.InvalidStatus as exc:
            statuses[f"{'foreign' if foreign else 'guess'} {exc.response.status_code}"] += 1
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            statuses["failed"] += 1

    async def flood(server: Server, stop: asyncio.Event) -> str:
        n = 0
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set() and n < 20_000:
            while len(running) < IN_FLIGHT:
                n += 1
                task = asyncio.create_task(one(server, n))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*running)
        return f"{n} upgrades: {dict(statuses)}"

    async with attack_server(project(tmp_path)) as server:
        # The real session still works from the right Origin (the hook is live).
        async with connect(f"{server.ws}/ws/chat", origin=server.http,  # type: ignore[arg-type]
                           additional_headers={"Cookie": "sid=s-real"}):
            pass
        report = await measure(server, flood, name="cookie upgrade flood", seconds=5)
    report.check()
    assert statuses["opened"] == 0 and statuses["failed"] == 0, statuses
    assert statuses["foreign 403"] > 100 and statuses["guess 401"] > 100, statuses
    assert set(statuses) == {"foreign 403", "guess 401"}, statuses
