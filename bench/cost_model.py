"""The cost of one delivery on a fixed workload: server CPU (user/system) or instructions.

    python bench/cost_model.py [--subs 1000] [--pubs 4000] [--burst 16] [--topics 1]
    python bench/cost_model.py --callgrind --pubs 480   # instructions (valgrind), repeatable
    python bench/cost_model.py --subs 1 --pubs 4000 --callgrind --deflate  # inbound inflate

A pubsocket server (`bench/app`, the seed endpoint) gets `subs` picows subscribers
spread over `topics` topics and one publisher that sends `pubs` publications in bursts
of `burst`, each burst in **one** TCP write (pre-masked frames), waiting until every
delivery of a burst arrived before the next. So each subscriber receives each burst's
frames in one write of the server's (`burst` frames per write when `topics` is 1), and
the run is the same every time: the measured window is exactly the publish phase.

Reported: server CPU µs per delivery (user and system from /proc via psutil; frames
per write is `burst` by construction). With ``--callgrind`` the server runs under
valgrind twice, publishing `pubs` / 4 and `pubs` publications; the difference of the two
instruction totals divided by the difference of deliveries is the instructions per
delivery of the publish phase alone (setup, handshakes and shutdown cancel out), and
the two `callgrind.out` files can be compared with callgrind_annotate.

With ``--deflate`` the publisher negotiates permessage-deflate and sends every
publication compressed (RSV1, a fresh compressor per message, as the negotiated
``client_no_context_takeover`` asks): the server inflates each one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
import zlib
from pathlib import Path

import orjson
import psutil
from websockets.frames import Frame, Opcode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lg_client import CountListener, Shared, close_all, confirm_subscribed, connect_many, sub_msg
from servers import BENCH, ROOT, RunningServer, pubsocket_spec

TEXT = Opcode.TEXT


async def raw_publisher(port: int, deflate: bool = False
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client on a plain stream: lets a burst go out as one TCP write.
    With `deflate` it offers permessage-deflate and requires it in the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    writer.write(
        (
            f"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30.0)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:80].decode(errors="replace"))
    if deflate and b"client_no_context_takeover" not in head:
        raise ConnectionError("permessage-deflate (client_no_context_takeover) not negotiated")
    return reader, writer


def frame(topic: str, seq: int, pad: str, deflate: bool = False) -> bytes:
    data = {"t": time.perf_counter_ns(), "s": seq, "p": pad}
    msg = orjson.dumps({"action": "publish", "topic": topic, "data": data})
    if not deflate:
        return Frame(TEXT, msg).serialize(mask=True)
    c = zlib.compressobj(wbits=-15)  # a fresh compressor: no context takeover
    wire = Frame(TEXT, (c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]).serialize(mask=True)
    return bytes((wire[0] | 0x40,)) + wire[1:]  # RSV1: compressed (RFC 7692 §6)


async def drive(args: argparse.Namespace, srv: RunningServer) -> dict[str, float]:
    sh = Shared()
    topics = [f"cost-{k}" for k in range(args.topics)]
    conns = await connect_many(
        srv.url, args.subs, lambda _i: CountListener(sh),
        lambda i, tr: tr.send(1, sub_msg(topics[i % args.topics])),  # 1: TEXT
        concurrency=16, total_timeout=1200.0,
    )
    groups: dict[str, list[CountListener]] = {}
    for i, (_, lis) in enumerate(conns):
        assert isinstance(lis, CountListener)
        groups.setdefault(topics[i % args.topics], []).append(lis)
    ctrl = conns[0][0]
    await confirm_subscribed(ctrl, groups, sh, total_timeout=600.0)
    _, writer = await raw_publisher(srv.port, args.deflate)
    pad = "x" * 40  # ~100-byte data, as the loadgen's
    per_burst = args.burst * args.subs // args.topics  # deliveries per burst
    proc = psutil.Process(srv.pid)
    c0, t0, r0 = proc.cpu_times(), time.perf_counter(), sh.received
    sent = 0
    while sent < args.pubs:
        burst = b"".join(frame(topics[(sent + j) % args.topics], sent + j, pad, args.deflate)
                         for j in range(args.burst))
        writer.write(burst)
        sent += args.burst
        if not await sh.wait_received(r0 + sent * args.subs // args.topics, 600.0):
            raise TimeoutError(f"stalled after {sent} publications")
    c1, t1 = proc.cpu_times(), time.perf_counter()
    deliveries = sh.received - r0
    writer.close()
    close_all(conns)
    await asyncio.sleep(0.2)
    return {
        "subs": args.subs, "topics": args.topics, "burst": args.burst,
        "publications": sent, "deliveries": deliveries, "per_burst": per_burst,
        "wall_s": t1 - t0,
        "server_user_us_per_delivery": 1e6 * (c1.user - c0.user) / deliveries,
        "server_sys_us_per_delivery": 1e6 * (c1.system - c0.system) / deliveries,
        "server_cpu_us_per_delivery": 1e6 * (c1.user + c1.system - c0.user - c0.system)
        / deliveries,
    }


def run_once(args: argparse.Namespace, out: Path | None) -> dict[str, float]:
    spec = pubsocket_spec()
    if out is not None:
        spec.cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *spec.cmd]
    log = BENCH / "results" / "logs" / "cost_model.log"
    srv = RunningServer(spec, log, ready_timeout=300.0)
    try:
        import uvloop

        res = uvloop.run(drive(args, srv))
    finally:
        srv.stop(grace=60.0)
    if out is not None:
        m = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(errors="replace"), re.M)
        res["instructions"] = float(m.group(1)) if m else float("nan")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--topics", type=int, default=1)
    ap.add_argument("--pubs", type=int, default=4000)
    ap.add_argument("--burst", type=int, default=16, help="publications per TCP write")
    ap.add_argument("--callgrind", action="store_true", help="instructions under valgrind")
    ap.add_argument("--deflate", action="store_true",
                    help="the publisher sends permessage-deflate frames")
    ap.add_argument("--out", default=str(BENCH / "results" / "callgrind"))
    args = ap.parse_args()
    if not args.callgrind:
        res = run_once(args, None)
    else:
        prefix = Path(args.out).resolve()
        prefix.parent.mkdir(parents=True, exist_ok=True)
        full = args.pubs
        args.pubs = max(args.burst, full // 4 // args.burst * args.burst)
        small = run_once(args, prefix.with_suffix(".small.out"))
        args.pubs = full
        res = run_once(args, prefix.with_suffix(".full.out"))
        extra = res["deliveries"] - small["deliveries"]
        res["instructions_per_delivery"] = (res["instructions"] - small["instructions"]) / extra
        res["instructions_per_publication"] = (
            (res["instructions"] - small["instructions"])
            / (res["publications"] - small["publications"]))
        res["callgrind_out"] = str(prefix) + ".{small,full}.out"
    print(json.dumps({**res, "tree": str(ROOT)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
