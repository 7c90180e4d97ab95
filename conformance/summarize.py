"""Summarize an Autobahn|Testsuite fuzzingclient report (reports/index.json).

Prints how many cases ended in each behavior, then every case that did not
pass, then ``FAILED=N`` as the last line; exits 1 when N > 0. A missing or
unreadable report prints no FAILED line and exits 2. Standard library only.

A case passes when its ``behavior`` is OK, NON-STRICT or INFORMATIONAL and
its ``behaviorClose`` is OK or INFORMATIONAL (UNIMPLEMENTED counts as failed:
it only appears for case groups that were asked for).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
PASSING_CLOSE = frozenset({"OK", "INFORMATIONAL"})


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort "9.10.2" after "9.2.1", as the suite numbers them."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def passed(result: dict[str, object]) -> bool:
    return result.get("behavior") in PASSING and result.get("behaviorClose") in PASSING_CLOSE


def summarize(index: dict[str, dict[str, dict[str, object]]], out: list[str]) -> int:
    failed = 0
    for agent in sorted(index):
        results = index[agent]
        counts = Counter(str(r.get("behavior")) for r in results.values())
        close_counts = Counter(str(r.get("behaviorClose")) for r in results.values())
        out.append(f"agent {agent}: {len(results)} cases")
        for behavior, count in sorted(counts.items()):
            out.append(f"  {behavior:<14} {count}")
        closes = ", ".join(f"{b} {n}" for b, n in sorted(close_counts.items()))
        out.append(f"  close handshake: {closes}")
        bad = sorted((c for c, r in results.items() if not passed(r)), key=case_key)
        for case_id in bad:
            r = results[case_id]
            out.append(
                f"  not passed: {case_id:<10} behavior={r.get('behavior')} "
                f"close={r.get('behaviorClose')} code={r.get('remoteCloseCode')} "
                f"report={r.get('reportfile')}"
            )
        failed += len(bad)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="path to reports/index.json")
    parser.add_argument("--elapsed", type=float, help="seconds the run took, to print")
    args = parser.parse_args(argv)

    try:
        index = json.loads(args.index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.index}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(index, dict) or not index:
        print(f"{args.index} holds no results", file=sys.stderr)
        return 2

    lines: list[str] = []
    failed = summarize(index, lines)
    print("\n".join(lines))
    if args.elapsed is not None:
        print(f"elapsed {args.elapsed:.0f} s")
    print(f"FAILED={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
