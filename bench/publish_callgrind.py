"""Instructions per socket publish (and per history/presence command), counted by callgrind.

    python bench/publish_callgrind.py [--rev HEAD~1] [-n 20000]

A wall-clock benchmark on a shared, loaded machine moves by 10-20 % between runs;
callgrind counts the instructions the interpreter executes, which repeat to ~0.1 %. Each
case runs one v1 session on a started hub (memory broker, one subscriber of the topic on
another session, so each publish is also fanned out once; 100 subscribers for `fanout`)
that takes `n` commands through
`Session.on_message`, the way the transport hands them over; the process is counted twice,
with `n` commands and with none, and the difference divided by `n` is the cost of one
command (interpreter start-up and imports cancel out). `--rev` counts an earlier commit's
`src/` (extracted with `git archive`) beside this tree's, so the two are compared on the
same run.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("publish", "fanout", "history", "presence")

CHILD = r'''
import asyncio, sys
from pubsocket import Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import V1
from pubsocket.hub.session import Session

class Peer:
    backlog = 0
    def __init__(self): self.n = 0
    def deliver(self, frame): self.n += 1
    def close_nowait(self, code, reason=""): raise SystemExit(f"closed {code} {reason}")
    def pause_reading(self): pass
    def resume_reading(self): pass
    def set_max_message_size(self, size): pass

CASE, N = sys.argv[1], int(sys.argv[2])
WATCHERS = 100 if CASE == "fanout" else 1
LINES = {"publish": '{"action":"publish","id":1,"topic":"t","data":{"n":1}}',
         "fanout": '{"action":"publish","id":1,"topic":"t","data":{"n":1}}',
         "history": '{"action":"history","id":1,"topic":"t","limit":1}',
         "presence": '{"action":"presence_stats","id":1,"topic":"t"}'}

async def main():
    settings = Settings(rate_limit=0, publish_byte_rate=0, history_reply_rate=0)
    hub = Hub(settings, MemoryBroker())
    hub.presence.enable(["t"], False)
    await hub.start()
    watchers = [Session(hub, Peer(), settings, codec=V1) for _ in range(WATCHERS)]
    for watcher in watchers:
        watcher.on_message('{"action":"subscribe","id":1,"topic":"t"}')
    await asyncio.sleep(0.01)
    session = Session(hub, Peer(), settings, codec=V1)
    line = LINES[CASE]
    for _ in range(N):
        session.on_message(line)
        while session._task is not None or session._waiting is not None:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    got = min(w.peer.n for w in watchers)
    if N and not (session.peer.n == N and got >= (N if CASE in ("publish", "fanout") else 1)):
        raise SystemExit(f"replies {session.peer.n}, deliveries {got} of {N}")
    await hub.close()

asyncio.run(main())
'''


def count(src: Path, case: str, n: int) -> int:
    """Instructions callgrind counts for one child run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", CHILD, case, str(n)],
            env=env, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode:
            raise SystemExit(f"child failed ({case}, {n}): {proc.stderr[-2000:]}")
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if found is None:
            raise SystemExit("callgrind printed no total")
        return int(found.group(1))


def per_command(src: Path, case: str, n: int) -> float:
    return (count(src, case, n) - count(src, case, 0)) / n


def extract(rev: str, into: Path) -> Path:
    blob = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True,
                          capture_output=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default=None, help="an earlier commit to compare with")
    ap.add_argument("-n", type=int, default=20000, help="commands per counted run")
    ap.add_argument("--case", choices=CASES, action="append")
    args = ap.parse_args()
    cases = args.case or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"after": ROOT / "src"}
        if args.rev:
            trees = {"before": extract(args.rev, Path(tmp)), **trees}
        results = {(name, case): per_command(src, case, args.n)
                   for case in cases for name, src in trees.items()}
    for case in cases:
        row = [f"{case:9}"] + [f"{name} {results[(name, case)]:9.0f} instr"
                               for name in trees]
        if args.rev:
            ratio = results[("after", case)] / results[("before", case)]
            row.append(f"after/before {ratio:.4f}")
        print("  ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
