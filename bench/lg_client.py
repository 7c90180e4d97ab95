"""picows client side of the load generator: listeners, bounded connect, sentinels.

Frame classification: data frames (what scenarios measure) carry a JSON object of
~100 bytes; sentinel frames carry the JSON number ``0`` (1 byte). Anything shorter
than ``DATA_MIN`` bytes is treated as control, so late sentinels never count as
deliveries and the hot path only looks at ``frame.payload_size``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

DATA_MIN = 16
NEVER = 1 << 62
TEXT = WSMsgType.TEXT


class Shared:
    """Counters shared by every listener of one scenario (single event loop)."""

    __slots__ = ("disconnects", "lat", "ready", "received", "t0_ns", "waiter", "wake_at")

    def __init__(self) -> None:
        self.received = 0  # data frames received, all listeners
        self.ready = 0  # listeners that have seen a sentinel
        self.disconnects = 0
        self.wake_at = NEVER
        self.waiter: asyncio.Future[None] | None = None
        self.t0_ns = NEVER  # latency samples are kept for sends at/after this instant
        self.lat: list[int] = []

    def wake(self) -> None:
        self.wake_at = NEVER
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_result(None)

    async def wait_received(self, target: int, timeout: float) -> bool:
        """Wait until ``received >= target``; False on timeout."""
        if self.received >= target:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.wake_at = target
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self.waiter = None
            self.wake_at = NEVER
        return self.received >= target


class CountListener(WSListener):
    """Counts data frames; cheapest possible hot path."""

    __slots__ = ("is_ready", "n", "sh")

    def __init__(self, sh: Shared) -> None:
        super().__init__()
        self.sh = sh
        self.n = 0
        self.is_ready = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.payload_size >= DATA_MIN:
            self.n += 1
            sh = self.sh
            sh.received += 1
            if sh.received >= sh.wake_at:
                sh.wake()
        else:
            self.control(transport, frame)

    def control(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt == TEXT:
            if not self.is_ready:
                self.is_ready = True
                self.sh.ready += 1
        elif mt == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.sh.disconnects += 1


class LatencyListener(CountListener):
    """Also parses the embedded send timestamp (perf_counter_ns, same process)."""

    __slots__ = ()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.payload_size >= DATA_MIN:
            now = time.perf_counter_ns()
            t: int = orjson.loads(frame.get_payload_as_memoryview())["t"]
            self.n += 1
            sh = self.sh
            sh.received += 1
            if t >= sh.t0_ns:
                sh.lat.append(now - t)
            if sh.received >= sh.wake_at:
                sh.wake()
        else:
            self.control(transport, frame)


class IdleListener(WSListener):
    """Control-only connection (publisher / sentinel sender)."""

    __slots__ = ("sh",)

    def __init__(self, sh: Shared) -> None:
        super().__init__()
        self.sh = sh

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.sh.disconnects += 1


def sub_msg(topic: str) -> bytes:
    return orjson.dumps({"action": "subscribe", "topic": topic})


def pub_msg(topic: str, data: Any) -> bytes:
    return orjson.dumps({"action": "publish", "topic": topic, "data": data})


class Payload:
    """Builds publish frames whose ``data`` is ~``size`` bytes of JSON."""

    __slots__ = ("pad",)

    def __init__(self, size: int = 100) -> None:
        base = len(orjson.dumps({"t": time.perf_counter_ns(), "s": 1000000, "p": ""}))
        self.pad = "x" * max(DATA_MIN, size - base)

    def publish(self, topic: str, seq: int) -> bytes:
        data = {"t": time.perf_counter_ns(), "s": seq, "p": self.pad}
        return orjson.dumps({"action": "publish", "topic": topic, "data": data})


Conn = tuple[WSTransport, WSListener]


# aiofastnet (picows' optional transport) made client connects ~2x more expensive
# here; uvloop's own transport is used unless a scenario sets aiofastnet=1.
USE_AIOFASTNET = False


def bearer(token: str | None) -> dict[str, str] | None:
    """The upgrade headers of a client authenticating with `token` (None: anonymous)."""
    return {"Authorization": f"Bearer {token}"} if token else None


async def connect_one(
    url: str,
    listener_factory: Callable[[], WSListener],
    timeout: float,
    attempts: int = 2,
    headers: Mapping[str, str] | None = None,
) -> Conn:
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            async with asyncio.timeout(timeout):
                return await ws_connect(
                    listener_factory,
                    url,
                    websocket_handshake_timeout=timeout,
                    max_frame_size=1 << 20,
                    read_buffer_init_size=4096,
                    use_aiofastnet=USE_AIOFASTNET,
                    extra_headers=headers,
                )
        except (OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
    raise ConnectionError(f"connect failed after {attempts} attempts: {last!r}")


async def connect_many(
    url: str,
    n: int,
    factory: Callable[[int], WSListener],
    on_connected: Callable[[int, WSTransport], None],
    *,
    concurrency: int = 64,
    timeout_each: float = 10.0,
    total_timeout: float = 120.0,
    headers: Mapping[str, str] | None = None,
) -> list[Conn]:
    """Open ``n`` connections with at most ``concurrency`` handshakes in flight."""
    conns: list[Conn | None] = [None] * n
    it = iter(range(n))

    async def worker() -> None:
        for i in it:  # shared iterator: each index taken exactly once
            tr, lis = await connect_one(url, partial(factory, i), timeout_each, headers=headers)
            conns[i] = (tr, lis)
            on_connected(i, tr)

    async with asyncio.timeout(total_timeout):
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, n)):
                tg.create_task(worker())
    out = [c for c in conns if c is not None]
    if len(out) != n:
        raise ConnectionError(f"only {len(out)}/{n} connections established")
    return out


async def confirm_subscribed(
    ctrl: WSTransport,
    groups: Mapping[str, Sequence[CountListener]],
    sh: Shared,
    *,
    total_timeout: float = 30.0,
    first_wait: float = 0.25,
) -> int:
    """Publish sentinel ``0`` to each topic until every member has seen one.

    Returns the number of sentinel rounds used. Raises TimeoutError if some
    subscriber never confirms within ``total_timeout``.
    """
    expected = sh.ready + sum(1 for ls in groups.values() for x in ls if not x.is_ready)
    pending: list[str] = [t for t, ls in groups.items() if not all(x.is_ready for x in ls)]
    deadline = time.monotonic() + total_timeout
    wait = first_wait
    rounds = 0
    sentinel = {t: pub_msg(t, 0) for t in pending}
    while pending:
        if time.monotonic() >= deadline:
            missing = sum(1 for t in pending for x in groups[t] if not x.is_ready)
            raise TimeoutError(
                f"{missing} subscribers on {len(pending)} topics never confirmed their "
                f"subscription after {rounds} sentinel rounds "
                f"({sh.disconnects} connections closed by then; see the server log)"
            )
        rounds += 1
        for t in pending:
            ctrl.send(TEXT, sentinel[t])
        until = min(deadline, time.monotonic() + wait)
        while sh.ready < expected and time.monotonic() < until:
            await asyncio.sleep(0.002)
        pending = [t for t in pending if not all(x.is_ready for x in groups[t])]
        wait = min(wait * 2, 2.0)
    return rounds


def close_all(conns: Iterable[Conn]) -> None:
    for tr, _ in conns:
        tr.disconnect(graceful=False)
