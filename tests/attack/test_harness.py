"""The harness itself: with no attack, the bystander is fast and loses nothing."""

from __future__ import annotations

import asyncio

from tests.attack.harness import Server, attack_server, measure


async def idle(server: Server, stop: asyncio.Event) -> str:
    await stop.wait()
    return "no attack"


async def test_no_attack_baseline() -> None:
    async with attack_server() as server:
        report = await measure(server, idle, name="baseline", seconds=2)
    report.check()
    assert report.sent >= 80
