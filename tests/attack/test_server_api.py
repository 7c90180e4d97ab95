"""Attacks on Centrifugo's server API (issue 18) against a real `make run` server.

* A batch flood: 4 keep-alive connections sending ``POST /api/batch`` with the most
  commands a batch may hold (`server_api_batch_max`, 100), as fast as they can, with
  the API key. Each command is charged to the API key's HTTP budget before any runs, so
  at most the burst plus the rate of publishes get through; the rest are 429s, and the
  bystander stays fast.
* Oversized batches: one command past the cap is refused whole (error 106) at the cost
  of one request, however many commands it lists.
"""

from __future__ import annotations

import asyncio
import collections
import json

from tests.attack.harness import Server, attack_server, measure
from tests.attack.test_http import flood
from tests.conftest import API_KEY

BATCH = 100  # the default server_api_batch_max


def post_batch(commands: int) -> bytes:
    body = json.dumps({"commands": [{"publish": {"channel": "room:flood", "data": {"n": n}}}
                                    for n in range(commands)]}).encode()
    return (f"POST /api/batch HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_batch_flood_is_charged_per_command_and_the_bystander_stays_fast() -> None:
    statuses: collections.Counter[int] = collections.Counter()
    seconds = 4.0

    async def attack(server: Server, stop: asyncio.Event) -> str:
        await flood(server, stop, post_batch(BATCH), seconds, statuses)
        return f"/api/batch x{BATCH} flood: {dict(statuses)}"

    async with attack_server() as server:
        report = await measure(server, attack, name="batch flood", seconds=seconds)
    report.check()
    assert statuses[429] > 1000, statuses  # refused cheaply, at speed
    # The API key's budget (burst 200, then 100/s) is spent per command: a handful of
    # full batches get through, not thousands.
    assert 0 < statuses[200] <= (200 + 100 * (seconds + 3)) / BATCH + 4, statuses
    assert statuses[0] == 0, statuses


async def test_oversized_batch_flood_is_refused_whole() -> None:
    statuses: collections.Counter[int] = collections.Counter()
    seconds = 3.0

    async def attack(server: Server, stop: asyncio.Event) -> str:
        await flood(server, stop, post_batch(BATCH + 1), seconds, statuses)
        return f"/api/batch x{BATCH + 1} flood: {dict(statuses)}"

    async with attack_server() as server:
        report = await measure(server, attack, name="oversized batches", seconds=seconds)
        await asyncio.sleep(0.5)  # the API key's budget refills (100/s)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b'{"channel": "room:flood"}'
        writer.write((f"POST /api/history HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
                      f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
                      ).encode() + body)
        async with asyncio.timeout(5):
            reply = await reader.read()
        writer.close()
    report.check()
    # Nothing of any oversized batch ran: the topic's position never moved.
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(payload)["result"]["offset"] == 0, payload
    assert statuses[200] + statuses[429] > 100 and statuses[0] == 0, statuses
