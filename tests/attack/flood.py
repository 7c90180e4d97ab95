"""``python -m tests.attack.flood PORT CONNECTIONS PIPELINE SECONDS REQUEST_B64``: send
one HTTP request over and over on keep-alive connections, `PIPELINE` in flight each,
for at most `SECONDS` (or until SIGTERM), to 127.0.0.1 only; print the count of each
status as JSON (``0``: the server closed a connection). The attack suite runs it in its
own process, so the flood never competes with the bystander's client for a loop."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import signal
import sys


async def _one(port: int, request: bytes, pipeline: int, stop: asyncio.Event,
               statuses: collections.Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            writer.write(request * pipeline)
            for _ in range(pipeline):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = next(int(line.split(b":")[1]) for line in lines
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                statuses[int(lines[0].split()[1])] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        statuses[0] += 1
    finally:
        writer.close()


async def main(port: int, connections: int, pipeline: int, seconds: float,
               request: bytes) -> dict[int, int]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    statuses: collections.Counter[int] = collections.Counter()
    tasks = [asyncio.create_task(_one(port, request, pipeline, stop, statuses))
             for _ in range(connections)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=5)
    return dict(statuses)


if __name__ == "__main__":
    port, conns, pipe, secs, req = sys.argv[1:6]
    counts = asyncio.run(main(int(port), int(conns), int(pipe), float(secs),
                              base64.b64decode(req)))
    print(json.dumps(counts))
