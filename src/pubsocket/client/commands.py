"""The client commands of the ``pubsocket`` CLI: ``sub``, ``pub``, ``presence``.

`pubsocket.cli` mounts them (`add_parsers`) and runs them (`run`) with the default token
it read from the settings (the client never reads the environment itself). Output is
JSON, one value per line; errors are one ``pubsocket: ...`` line on stderr and exit 1
(2 for a bad argument). Ctrl-C (SIGINT) or SIGTERM ends ``sub`` at once, whether it is
still connecting or already printing (exit 0 once subscribed, 130 before); Ctrl-C ends
``pub`` and ``presence`` with 130, quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson

from .connection import connect
from .errors import ClientError, Forbidden
from .subscription import Message

COMMANDS = frozenset({"sub", "pub", "presence"})
INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sub``, ``pub`` and ``presence`` to the CLI's subcommands."""
    token_help = "the token (default: API_KEY from the environment or .env)"
    s = sub.add_parser("sub", help="print a topic's messages as JSON lines until Ctrl-C")
    s.add_argument("url", help="the endpoint, e.g. ws://127.0.0.1:7145/ws/chat")
    s.add_argument("topic")
    s.add_argument("--since", type=_since, metavar="OFFSET:EPOCH",
                   help="recover from this position (as printed at subscribe)")
    s.add_argument("--token", help=token_help)
    p = sub.add_parser("pub", help="publish one JSON value; prints the ack")
    p.add_argument("url")
    p.add_argument("topic")
    p.add_argument("json", help="the data, as JSON (quote strings: '\"hi\"')")
    p.add_argument("--token", help=token_help)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the ack")
    r = sub.add_parser("presence", help="print who is subscribed to a topic")
    r.add_argument("url")
    r.add_argument("topic")
    r.add_argument("--stats", action="store_true", help="only count connections and users")
    r.add_argument("--token", help=token_help)


def run(args: argparse.Namespace, default_token: Callable[[], str | None]) -> int:
    """Run the parsed command; the exit status."""
    token = args.token if args.token is not None else default_token()
    data: Any = None
    if args.command == "pub":
        try:
            data = orjson.loads(args.json)
        except orjson.JSONDecodeError:
            print("pubsocket: the message is not valid JSON (quote strings: '\"hi\"')",
                  file=sys.stderr)
            return 2
    url = _ws_url(args.url)
    try:
        if args.command == "sub":
            return asyncio.run(_sub(url, args.topic, args.since, token))
        if args.command == "pub":
            return asyncio.run(_pub(url, args.topic, data, token, args.timeout))
        return asyncio.run(_presence(url, args.topic, args.stats, token))
    except KeyboardInterrupt:
        return INTERRUPTED
    except Forbidden as exc:
        print(f"pubsocket: forbidden on {args.topic}: {exc}", file=sys.stderr)
    except ClientError as exc:  # each carries a one-line, user-facing message
        print(f"pubsocket: {exc}", file=sys.stderr)
    return 1


def _since(text: str) -> tuple[int, str]:
    offset, sep, epoch = text.partition(":")
    if not sep or not offset.isdigit() or not epoch:
        raise argparse.ArgumentTypeError("expected OFFSET:EPOCH, e.g. 41:9f2c01ab")
    return int(offset), epoch


def _ws_url(url: str) -> str:
    """Accept http(s):// and bare host:port/path too."""
    for plain, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            return ws + url[len(plain):]
    return url if "://" in url else f"ws://{url}"


def _line(value: Any, err: bool = False) -> None:
    print(orjson.dumps(value).decode(), file=sys.stderr if err else sys.stdout, flush=True)


async def _sub(url: str, topic: str, since: tuple[int, str] | None, token: str | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    subscribed = False

    async def follow() -> None:
        nonlocal subscribed
        async with connect(url, token=token) as client:
            sub = await client.subscribe(topic, since=since)
            subscribed = True
            # sub.offset may already be past the ack (replayed messages are queued): print
            # the epoch, the part of a --since position that the message lines do not carry
            print(f"pubsocket: subscribed to {topic} (epoch {sub.epoch}; resume with "
                  f"--since OFFSET:{sub.epoch})", file=sys.stderr, flush=True)
            async for event in sub:
                if isinstance(event, Message):
                    _line({"topic": event.topic, "offset": event.offset, "data": event.data})
                else:
                    _line({"gap": event.reason, "topic": event.topic, "offset": event.offset,
                           "epoch": event.epoch}, err=True)

    # The stop signal races connecting and subscribing too, not only the printing.
    following = asyncio.create_task(follow())
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (following, stopping):
        task.cancel()
    if following in done:
        following.result()  # the connection or the subscription failed: raise its error
        return 0
    with contextlib.suppress(asyncio.CancelledError):
        await following  # closes the client
    return 0 if subscribed else INTERRUPTED


async def _pub(url: str, topic: str, data: Any, token: str | None, wait: float) -> int:
    async with connect(url, token=token, timeout=wait) as client:
        _line({"offset": await client.publish(topic, data)})
    return 0


async def _presence(url: str, topic: str, stats: bool, token: str | None) -> int:
    async with connect(url, token=token) as client:
        if stats:
            counts = await client.presence_stats(topic)
            _line({"connections": counts.connections, "users": counts.users})
        else:
            members = await client.presence(topic)
            _line({cid: {"user": m.user, "info": m.info} for cid, m in members.items()})
    return 0
