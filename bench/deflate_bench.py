"""permessage-deflate and TLS costs (part of `make bench`), deflate vs plain in one run.

    python bench/deflate_bench.py [--quick] [--rounds 3]

* **bytes on the wire** for a realistic ~2 KB JSON publication (a page of 20 chat
  messages) as a ``pubsocket.v1`` delivery: the frame the server writes, deflated (the
  shared frame of server/deflate.py) vs plain. Target <= 0.5x.
* **server CPU for fan-out**: 300 publications of that payload to 300 subscribers that
  negotiated deflate vs 300 that did not (websockets' client, ``compression="deflate"``
  / ``None``); the server's user+system CPU from the first publish to the last
  delivery, median of `--rounds`, modes alternating on one server. Target <= 1.5x.
* **idle RSS per connection**: 2,000 subscribed connections, deflate vs plain, a fresh
  server each; (RSS after - RSS before) / 2,000. Target <= 1.25x.
* **TLS** (report only): handshakes/s (sequential connect + close) and the fan-out
  above (plain frames) over TLS vs plain, with a trustme certificate.

The server is pinned to half the CPUs and this script to the other half (bench/servers.py).
Writes bench/results/deflate.json and prints a table. The machine may be shared: ratios
come from the same run; read them with the noise in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

from run import RESULTS, meta, raise_nofile  # noqa: E402
from servers import WS_PATH, RunningServer, default_pinning, pin_to, pubsocket_spec  # noqa: E402

from pubsocket.framing import text_frame  # noqa: E402
from pubsocket.server.deflate import DeflateFramer  # noqa: E402

TIMEOUT = 180.0
TOPIC = "bench"
V1 = ["pubsocket.v1"]
TARGETS = {"wire_ratio": 0.5, "cpu_ratio": 1.5, "rss_ratio": 1.25}


def chat_page() -> list[dict[str, Any]]:
    """~2 KB of JSON: twenty chat messages as an app would publish a history page."""
    names = ["alice", "bob", "carol", "dave", "erin"]
    lines = ["see you at the standup", "the build is green again", "lunch at noon?",
             "merged, thanks!", "can you review #482 when you have a minute"]
    return [{"id": 48100 + i, "user": names[i % 5], "room": "general",
             "text": lines[(i * 3) % 5], "ts": 1764980000 + 17 * i,
             "reactions": {"+1": i % 3}} for i in range(20)]


def v1_delivery(data: Any) -> bytes:
    """The payload a pubsocket.v1 subscriber receives for a publication of `data`."""
    from pubsocket.brokers import Publication
    from pubsocket.codecs import V1 as CODEC
    pub = Publication(1, "epoch", json.dumps(data, separators=(",", ":")).encode())
    return CODEC.publication(TOPIC, pub)


def wire_bytes() -> dict[str, Any]:
    payload = v1_delivery(chat_page())
    plain, deflated = len(text_frame(payload)), len(DeflateFramer(15, 256)(payload))
    return {"payload": len(payload), "plain_frame": plain, "deflate_frame": deflated,
            "wire_ratio": deflated / plain}


async def subscriber(url: str, compression: str | None, ctx: ssl.SSLContext | None
                     ) -> ClientConnection:
    ws = await connect(url, subprotocols=V1, compression=compression,  # type: ignore[arg-type]
                       ssl=ctx, max_queue=None, open_timeout=30, ping_interval=None)
    await ws.send(json.dumps({"action": "subscribe", "topic": TOPIC, "id": 1}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply.get("type") == "ack", reply
    return ws


async def fan_out(server: RunningServer, subs: list[ClientConnection], pubs: int,
                  url: str, ctx: ssl.SSLContext | None) -> tuple[float, float]:
    """(server CPU seconds, wall seconds) to deliver `pubs` publications to `subs`."""
    proc = psutil.Process(server.pid)
    data = chat_page()

    async def drain(ws: ClientConnection) -> None:
        got = 0
        while got < pubs:
            message = json.loads(await ws.recv())
            if isinstance(message, dict) and message.get("topic") == TOPIC:
                got += 1

    async with connect(url, subprotocols=V1, compression=None, ssl=ctx,  # type: ignore[arg-type]
                       ping_interval=None) as pub:
        before, start = proc.cpu_times(), time.perf_counter()
        readers = [asyncio.create_task(drain(ws)) for ws in subs]
        for i in range(pubs):
            await pub.send(json.dumps({"action": "publish", "topic": TOPIC,
                                       "data": {"seq": i, "page": data}}))
            if i % 20 == 19:
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
        after, wall = proc.cpu_times(), time.perf_counter() - start
    return (after.user + after.system) - (before.user + before.system), wall


async def open_many(url: str, n: int, compression: str | None,
                    ctx: ssl.SSLContext | None = None) -> list[ClientConnection]:
    conns: list[ClientConnection] = []
    for start in range(0, n, 100):  # batches: the listen backlog stays short
        conns += await asyncio.gather(*(subscriber(url, compression, ctx)
                                        for _ in range(start, min(n, start + 100))))
    return conns


async def close_all(conns: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


def start(cpus: set[int] | None, log: str, env: dict[str, str] | None = None
          ) -> RunningServer:
    return RunningServer(pubsocket_spec(env=env), RESULTS / "logs" / log, cpus=cpus)


async def cpu_rounds(args: argparse.Namespace, cpus: set[int] | None) -> dict[str, Any]:
    server = start(cpus, "deflate-cpu.log")
    try:
        url = server.url
        zipped = await open_many(url, args.subscribers, "deflate")
        plain = await open_many(url, args.subscribers, None)
        results: dict[str, list[float]] = {"deflate": [], "plain": []}
        for _ in range(args.rounds):
            for mode, subs in (("deflate", zipped), ("plain", plain)):
                cpu, _wall = await fan_out(server, subs, args.publications, url, None)
                results[mode].append(cpu)
        await close_all(zipped + plain)
    finally:
        server.stop()
    d, p = statistics.median(results["deflate"]), statistics.median(results["plain"])
    return {"deflate_cpu_s": d, "plain_cpu_s": p, "cpu_ratio": d / p, "samples": results}


async def idle_rss(args: argparse.Namespace, cpus: set[int] | None) -> dict[str, Any]:
    per: dict[str, float] = {}
    for mode, compression in (("plain", None), ("deflate", "deflate")):
        server = start(cpus, f"deflate-rss-{mode}.log")
        try:
            proc = psutil.Process(server.pid)
            warm = await open_many(server.url, 50, compression)  # first-use allocations
            await asyncio.sleep(0.5)
            before = proc.memory_info().rss
            conns = await open_many(server.url, args.idle, compression)
            await asyncio.sleep(1.0)
            per[mode] = (proc.memory_info().rss - before) / args.idle
            await close_all(conns + warm)
        finally:
            server.stop()
    return {"plain_bytes_per_conn": per["plain"], "deflate_bytes_per_conn": per["deflate"],
            "rss_ratio": per["deflate"] / per["plain"]}


async def tls_rounds(args: argparse.Namespace, cpus: set[int] | None) -> dict[str, Any]:
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        certfile, keyfile = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(certfile)
        cert.private_key_pem.write_to_path(keyfile)
        for mode in ("plain", "tls"):
            env = {"PUBSOCKET_CERTFILE": certfile, "PUBSOCKET_KEYFILE": keyfile} \
                if mode == "tls" else {}
            ctx = client_ctx if mode == "tls" else None
            kind = TLSServer if mode == "tls" else RunningServer
            server = kind(pubsocket_spec(env=env), RESULTS / "logs" / f"deflate-{mode}.log",
                          cpus=cpus)
            try:
                url = f"{'wss' if ctx else 'ws'}://127.0.0.1:{server.port}{WS_PATH}"
                t0 = time.perf_counter()
                for _ in range(args.handshakes):
                    async with connect(url, ssl=ctx, compression=None, ping_interval=None):
                        pass
                hs = args.handshakes / (time.perf_counter() - t0)
                subs = await open_many(url, args.tls_subscribers, None, ctx)
                cpu, wall = await fan_out(server, subs, args.publications, url, ctx)
                await close_all(subs)
                out[mode] = {"handshakes_per_s": hs, "fanout_cpu_s": cpu,
                             "fanout_deliveries_per_s":
                                 args.tls_subscribers * args.publications / wall}
            finally:
                server.stop()
    return out


class TLSServer(RunningServer):
    """A server whose readiness is its port accepting TCP: the plain-text upgrade probe
    of bench/servers.py cannot speak TLS."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"TLS server not ready after {timeout}s: {self.log_tail()}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections and rounds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.subscribers = 100 if args.quick else 300
    args.publications = 100 if args.quick else 300
    args.idle = 500 if args.quick else 2000
    args.handshakes = 100 if args.quick else 300
    args.tls_subscribers = 50 if args.quick else 100
    if args.quick:
        args.rounds = 1
    raise_nofile()
    pinning = default_pinning()
    server_cpus, own_cpus = pinning if pinning else (None, None)
    if own_cpus:
        pin = pin_to(own_cpus)
        assert pin is not None
        pin()
    result: dict[str, Any] = {"meta": meta(), "targets": TARGETS,
                              "params": {k: v for k, v in vars(args).items()}}
    result["wire"] = wire_bytes()
    result["cpu"] = await cpu_rounds(args, server_cpus)
    result["rss"] = await idle_rss(args, server_cpus)
    result["tls"] = await tls_rounds(args, server_cpus)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deflate.json").write_text(json.dumps(result, indent=2))
    w, c, r, t = result["wire"], result["cpu"], result["rss"], result["tls"]
    rows = [
        ("wire bytes, 2 KB page (deflate/plain)",
         f"{w['deflate_frame']} / {w['plain_frame']} B", w["wire_ratio"], TARGETS["wire_ratio"]),
        (f"server CPU, {args.publications} pubs x {args.subscribers} subs",
         f"{c['deflate_cpu_s']:.2f} / {c['plain_cpu_s']:.2f} s", c["cpu_ratio"],
         TARGETS["cpu_ratio"]),
        (f"idle RSS per connection, {args.idle} conns",
         f"{r['deflate_bytes_per_conn'] / 1024:.1f} / {r['plain_bytes_per_conn'] / 1024:.1f} KiB",
         r["rss_ratio"], TARGETS["rss_ratio"]),
    ]
    print(f"{'measure':48} {'deflate / plain':>22} {'ratio':>7} {'target':>7}")
    for name, values, ratio, target in rows:
        ok = "ok" if ratio <= target else "MISSED"
        print(f"{name:48} {values:>22} {ratio:7.2f} {'<= ' + str(target):>7} {ok}")
    print(f"TLS (report only): handshakes/s tls {t['tls']['handshakes_per_s']:.0f} vs plain "
          f"{t['plain']['handshakes_per_s']:.0f}; fan-out deliveries/s tls "
          f"{t['tls']['fanout_deliveries_per_s']:.0f} vs plain "
          f"{t['plain']['fanout_deliveries_per_s']:.0f} (server CPU "
          f"{t['tls']['fanout_cpu_s']:.2f} vs {t['plain']['fanout_cpu_s']:.2f} s)")


if __name__ == "__main__":
    asyncio.run(main())
