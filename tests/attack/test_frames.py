"""Attack: what one frame can cost (issue 15, findings 2 and 5), on ``make run``'s server.

Finding 2: a 1 MB frame of ``{}`` lines on ``/connection/websocket`` cost 0.5-0.7 s of
server CPU for one rate-limit token, before any connect; four such sockets pushed a
bystander's p99 to 3.3 s. Now a frame's lines are counted before parsing: before
connect the frame is refused from its header (16 KiB limit), after it the line count is
over the cap (3501) and would be over the token bucket anyway.

Finding 5: a frame header announcing ~1 MiB and a trickle of its payload (or fragments)
held ~1 MiB per unauthenticated socket for 10-20 s: 300 sockets, +308 MiB, not returned
after they closed. Now the header (or the fragments past 16 KiB) is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import Opcode

from tests.attack.harness import MiB, Server, attack_server, measure, token
from tests.centrifuge.test_frames import masked, raw_upgrade

PATH = "/connection/websocket"
BATCH = "{}\n" * 333_333  # ~1 MB of empty commands (pongs), under the 1 MiB frame limit
SOCKETS = 300  # finding 5's unauthenticated sockets
KiB = 1024


async def _stopped(stop: asyncio.Event, within: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), within)
    return stop.is_set()


async def batch_frames(server: Server, stop: asyncio.Event) -> str:
    """Four sockets sending 1 MB frames of ``{}`` lines for as long as the attack runs,
    reconnecting when closed: two never connect (finding 2 as found), two connect first
    with a valid token (the per-frame cap and the token bucket)."""
    closes: Counter[int | None] = Counter()
    frames = 0

    async def one(authenticated: bool) -> None:
        nonlocal frames
        for _ in range(1000):  # connections, bounded
            if stop.is_set():
                return
            try:
                async with connect(server.ws + PATH, max_size=None, open_timeout=5,
                                   close_timeout=1) as ws:
                    if authenticated:
                        await ws.send(f'{{"id":1,"connect":{{"token":"{token()}"}}}}')
                        await asyncio.wait_for(ws.recv(), 5)
                    for _ in range(100):  # frames on this connection, bounded
                        await ws.send(BATCH)
                        frames += 1
                        if await _stopped(stop, 0.01):
                            return
            except ConnectionClosed as exc:
                closes[exc.rcvd.code if exc.rcvd else None] += 1
            except (OSError, InvalidHandshake, TimeoutError):
                closes[-1] += 1
            if await _stopped(stop, 0.05):
                return

    await asyncio.gather(*(one(n >= 2) for n in range(4)))
    return f"{frames} frames of 1 MB sent; closes by code {dict(closes)}"


async def test_batch_frames_cost_one_token_per_line() -> None:
    async with attack_server() as server:
        report = await measure(server, batch_frames, name="finding 2: 1 MB batch frames",
                               seconds=8)
    report.check()
    assert "3501" in report.notes[0]  # refused (pre-connect size, command cap)


async def partial_frames(server: Server, stop: asyncio.Event) -> str:
    """`SOCKETS` sockets that upgrade and never connect, each sending the header of a
    1 MiB frame with 768 KiB of it and then 16 KiB every 0.5 s (every other socket:
    the same in 8 KiB fragments, each under the pre-connect limit), reopening 1.5-3 s
    after the server closed it."""
    whole = masked(b"x" * MiB)
    fragment = masked(b"x" * 8 * KiB, Opcode.CONT, fin=False)
    first_fragment = masked(b"x" * 8 * KiB, Opcode.TEXT, fin=False)
    gate = asyncio.Semaphore(50)  # handshakes in flight (the listen backlog is 100)
    refused: Counter[str] = Counter()
    held = 0  # the most sockets open at once
    open_now = 0

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   fragments: bool) -> None:
        if fragments:
            writer.write(first_fragment + fragment * 95)
        else:
            writer.write(whole[:768 * KiB])
        sent = 768 * KiB
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.5)
            except TimeoutError:
                if sent + 16 * KiB < MiB:  # never the whole message
                    writer.write(fragment * 2 if fragments else whole[sent:sent + 16 * KiB])
                    sent += 16 * KiB
                continue
            if not data:
                return
            if data[0] == 0x88:
                refused["close"] += 1

    async def one(n: int) -> None:
        nonlocal held, open_now
        for _ in range(100):  # connections, bounded
            if stop.is_set():
                return
            try:
                async with gate:
                    reader, writer = await raw_upgrade(server.port, PATH)
            except (OSError, TimeoutError, AssertionError, asyncio.IncompleteReadError):
                refused["handshake"] += 1
                if await _stopped(stop, 1):
                    return
                continue
            open_now += 1
            held = max(held, open_now)
            try:
                await hold(reader, writer, fragments=n % 2 == 1)
            except OSError:
                refused["reset"] += 1
            finally:
                open_now -= 1
                writer.close()
            if await _stopped(stop, random.uniform(1.5, 3)):  # not all 300 at once
                return

    await asyncio.gather(*(one(n) for n in range(SOCKETS)))
    return f"up to {held} sockets open at once; {dict(refused)}"


async def test_partial_frames_before_connect_hold_no_memory() -> None:
    async with attack_server() as server:
        report = await measure(server, partial_frames, name="finding 5: partial frames",
                               seconds=8)
    report.check()
    assert "close" in report.notes[0]  # the server refused them with a close frame
    # After they closed (measured 0.5 s later): main still held +200 MiB here, glibc
    # keeping the freed ~1 MiB read buffers; now there were none to free.
    assert report.rss_after - report.rss_before < 32 * MiB, report.describe()
