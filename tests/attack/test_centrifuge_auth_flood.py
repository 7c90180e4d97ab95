"""Attack: a flood of forged Centrifuge connect tokens at /connection/websocket (the chat
example's, secured) from one address.

The attacker keeps 20 upgrades in flight, each sending a connect with a forged token.
The address's failed-authentication budget (``PUBSOCKET_AUTH_FAILURE_LIMIT`` 5/s,
burst 20, the HTTP routes' own) is spent after the first 20: from then on the upgrades
are refused with 429 before a session exists, and sockets it upgraded beforehand are
closed with 3013 at their connect, even with a valid token, without verifying it. So
the server verifies at most burst + rate x seconds tokens however hard it is flooded;
the bystander stays fast and the server's RSS bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.attack.harness import Server, attack_server, measure, token

PATH = "/connection/websocket"
IN_FLIGHT = 20
HELD = 30  # sockets upgraded before the flood, connecting once the budget is spent
SECONDS = 5.0


async def test_forged_connect_token_flood_is_charged_and_refused_unverified() -> None:
    outcomes: Counter[str] = Counter()
    forged = token("attacker")[:-4] + "AAAA"

    async def one(server: Server) -> None:
        try:
            async with connect(server.ws + PATH, open_timeout=10) as ws:
                await ws.send(json.dumps({"id": 1, "connect": {"token": forged}}))
                outcomes[await _close_code(ws)] += 1
        except websockets.InvalidStatus as exc:
            outcomes[str(exc.response.status_code)] += 1
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            outcomes["failed"] += 1

    loop = asyncio.get_running_loop()
    held_seconds: list[float] = []

    async def held_connects(server: Server) -> None:
        held = [await connect(server.ws + PATH, open_timeout=10) for _ in range(HELD)]
        async with asyncio.timeout(3):  # until the flood has spent the budget
            while not outcomes["429"]:
                await asyncio.sleep(0.01)
        # Valid tokens, from the spent address, all at once: the budget refills 5/s and
        # the flood spends each refilled token, but a held connect may win one of them,
        # so the held phase is short and its possible winners are counted (below).
        started = loop.time()

        async def connect_held(ws: ClientConnection) -> None:
            await ws.send(json.dumps({"id": 1, "connect": {"token": token("held")}}))
            code = await _close_code(ws)
            outcomes["held " + ("connected" if code.startswith("reply") else code)] += 1
            await ws.close()

        await asyncio.gather(*(connect_held(ws) for ws in held))
        held_seconds.append(loop.time() - started)

    async def flood(server: Server, stop: asyncio.Event) -> str:
        held = asyncio.create_task(held_connects(server))
        await asyncio.sleep(0.2)  # the held sockets upgraded first
        n = 0
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set() and n < 20_000:
            while len(running) < IN_FLIGHT:
                n += 1
                task = asyncio.create_task(one(server))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*running, held)
        return f"{n} connects: {dict(outcomes)}"

    async with attack_server() as server:
        report = await measure(server, flood, name="forged Centrifuge token flood",
                               seconds=SECONDS)
    report.check()
    # Verified and refused (3500): the burst, plus what refilled while it ran.
    assert 20 <= outcomes["3500"] <= 20 + 5 * (SECONDS + 3), outcomes
    assert outcomes["429"] > 100, outcomes
    # Refused unverified, but for the tokens that refilled (5/s) while the held phase
    # ran, which a held connect may have won before the flood did.
    refilled = 1 + int(5 * held_seconds[0])
    assert outcomes["held 3013"] >= HELD - refilled, (outcomes, held_seconds)
    assert outcomes["held 3013"] + outcomes["held connected"] == HELD, outcomes
    # 3013 also for flood sockets upgraded on a refilled token that others spent first.
    assert set(outcomes) <= {"3500", "429", "3013", "held 3013", "held connected"}, outcomes


async def _close_code(ws: ClientConnection) -> str:
    """The close code the server ends `ws` with (or what it answered instead)."""
    try:
        async with asyncio.timeout(5):
            async for message in ws:
                return f"reply {str(message)[:40]}"
    except websockets.ConnectionClosed:
        pass
    except TimeoutError:
        return "timeout"
    return str(ws.close_code)
