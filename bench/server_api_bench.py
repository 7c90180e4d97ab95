"""Centrifugo's server API vs our HTTP API (part of `make bench`): acknowledged
``POST /api/publish`` per second in each dialect.

    python bench/server_api_bench.py [--seconds 3] [--rounds 3] [--connections 8]

One `pubsocket serve examples/chat` subprocess (what `make run` serves; the HTTP rate
limit off, memory broker); `--connections` keep-alive connections from a client
subprocess (tests/attack/flood.py, pipelining 1: each publish is answered before the
next is sent) post to one topic with history for `--seconds`, alternating the dialects
for `--rounds` rounds:

* ours: ``Authorization: Bearer <API key>``, ``{"topic", "data"}`` -> ``{"ok", "offset",
  "epoch"}``;
* Centrifugo's: ``X-API-Key``, ``{"channel", "data"}`` -> ``{"result": {"offset",
  "epoch"}}``.

Target: Centrifugo's dialect >= 0.9x ours (the best round of each). Writes
bench/results/server_api.json and prints a table.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import API_KEY  # noqa: E402
from tests.integration.spawn import spawn  # noqa: E402

RESULTS = BENCH / "results"
RATIO_TARGET = 0.9


def request(dialect: str) -> bytes:
    if dialect == "ours":
        body = json.dumps({"topic": "room:bench", "data": {"n": 1}}).encode()
        auth = f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json"
    else:
        body = json.dumps({"channel": "room:bench", "data": {"n": 1}}).encode()
        auth = f"X-API-Key: {API_KEY}\r\nContent-Type: application/json"
    return (f"POST /api/publish HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def run(port: int, dialect: str, seconds: float, connections: int) -> tuple[float, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.attack.flood", str(port), str(connections), "1",
         str(seconds), base64.b64encode(request(dialect)).decode()],
        capture_output=True, cwd=ROOT, check=True, timeout=seconds + 30).stdout
    statuses = {int(k): v for k, v in json.loads(out).items()}
    return statuses.get(200, 0) / seconds, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"ours": [], "centrifugo": []}
    with spawn(ROOT / "examples" / "chat", PUBSOCKET_HTTP_RATE_LIMIT="0") as proc:
        run(proc.port, "ours", 1.0, args.connections)  # warm up
        for _ in range(args.rounds):
            for dialect in rates:
                rate, statuses = run(proc.port, dialect, args.seconds, args.connections)
                if set(statuses) != {200}:
                    raise SystemExit(f"{dialect}: unexpected statuses {statuses}")
                rates[dialect].append(rate)
    best = {d: max(r) for d, r in rates.items()}
    ratio = best["centrifugo"] / best["ours"]
    print(f"{'dialect':<12} {'acked publishes/s (rounds)':<40} best")
    for dialect, values in rates.items():
        print(f"{dialect:<12} {', '.join(f'{v:,.0f}' for v in values):<40} "
              f"{best[dialect]:,.0f}")
    print(f"centrifugo / ours = {ratio:.2f} (target >= {RATIO_TARGET})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "server_api.json").write_text(json.dumps(
        {"rates": rates, "best": best, "ratio": ratio, "target": RATIO_TARGET,
         "connections": args.connections, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
