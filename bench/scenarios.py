"""Benchmark scenarios. Each is a bounded coroutine returning a flat metrics dict.

All scenarios: connect in bounded concurrent batches, confirm every subscription
with sentinel publishes, warm up, measure a fixed window, stop publishing, drain
(bounded), disconnect. Timestamps for latency are ``perf_counter_ns`` taken in this
process at send and at receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from lg_centrifuge import CfCountListener, cf_url, connect_and_subscribe
from lg_client import (
    TEXT,
    CountListener,
    IdleListener,
    LatencyListener,
    Payload,
    Shared,
    bearer,
    close_all,
    confirm_subscribed,
    connect_many,
    connect_one,
    sub_msg,
)
from lg_stats import ServerProbe, Snapshot, latency_summary_ms, snapshot, window_metrics
from picows import WSTransport

Metrics = dict[str, Any]


@dataclass
class Ctx:
    url: str
    probe: ServerProbe
    quick: bool = False
    opts: dict[str, float] = field(default_factory=dict)
    pub_url: str | None = None  # publisher on another node (cross-node runs)
    pub_token: str | None = None  # the publisher's token (None: anonymous)
    sub_token: str | None = None  # the subscribers' token (None: anonymous)

    @property
    def publisher_url(self) -> str:
        return self.pub_url or self.url

    def get(self, key: str, full: float, quick: float | None = None) -> float:
        if key in self.opts:
            return self.opts[key]
        return quick if (self.quick and quick is not None) else full

    def geti(self, key: str, full: int, quick: int | None = None) -> int:
        return int(self.get(key, full, quick))


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No cyclic-GC pauses in the loadgen while measuring (setup garbage frozen)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def load_fields(rate: float, fanout: float, m: Metrics) -> Metrics:
    """Offered vs delivered load for paced scenarios; flags an overloaded server."""
    offered = rate * fanout
    frac = m["deliveries_per_s"] / offered if offered else float("nan")
    return {
        "offered_deliveries_per_s": offered,
        "delivered_fraction": frac,
        "overloaded": bool(frac < 0.97 or m.get("p50_ms", 0.0) > 100.0),
    }


def paced_fields(sh: Shared, rate: float, sent: int, expected: int, lag: float,
                 rounds: int) -> Metrics:
    """What every paced scenario reports: its rate, the publishes sent and deliveries
    expected, received and lost, the pacer's worst lag and the subscribe check's rounds."""
    return {
        "rate": rate,
        "publishes": sent,
        "expected": expected,
        "received": sh.received,
        "loss": expected - sh.received,
        "pacer_max_lag_ms": lag * 1e3,
        "sentinel_rounds": rounds,
        "disconnects": sh.disconnects,
    }


class Window:
    """Snapshots at warmup end and at measurement end, scheduled on the loop."""

    def __init__(self, sh: Shared, probe: ServerProbe, warmup: float, duration: float) -> None:
        self.sh = sh
        self.probe = probe
        self.snaps: list[Snapshot] = []
        self.done = False
        loop = asyncio.get_running_loop()
        self._h = [
            loop.call_later(warmup, self._mark),
            loop.call_later(warmup + duration, self._end),
        ]

    def _mark(self) -> None:
        self.snaps.append(snapshot(self.sh.received, self.probe))

    def _end(self) -> None:
        self._mark()
        self.done = True

    def metrics(self) -> Metrics:
        for h in self._h:
            h.cancel()
        while len(self.snaps) < 2:  # stalled before the window closed
            self._mark()
        return dict(window_metrics(self.snaps[0], self.snaps[1], self.probe.cpus()))


TICK = 0.001  # event-loop timers are ms-granular; shorter sleeps become busy spins


async def paced(rate: float, total_s: float, fn: Callable[[int], None]) -> tuple[int, float]:
    """Call ``fn(i)`` on schedule ``start + i/rate`` for ``total_s``.

    Everything due is sent when the pacer wakes, then it sleeps until the next
    send is due (at least one tick), so at 10k/s it sends ~10 per ms. Returns
    (calls, max lateness of a send versus its schedule, in s).
    """
    total = int(rate * total_s)
    start = time.monotonic()
    hard_end = start + total_s + 5.0
    i = 0
    max_lag = 0.0
    while i < total:
        now = time.monotonic()
        if now > hard_end:
            break
        due = min(total, int((now - start) * rate) + 1)
        if due > i:
            max_lag = max(max_lag, now - (start + i / rate))
            while i < due:
                fn(i)
                i += 1
        delay = start + i / rate - time.monotonic()
        await asyncio.sleep(max(TICK, delay))
    return i, max_lag


async def _subscribers(
    ctx: Ctx, sh: Shared, n: int, topic_of: Callable[[int], str], latency: bool
) -> tuple[list[tuple[WSTransport, CountListener]], dict[str, list[CountListener]]]:
    # cf=1: subscribers speak the Centrifuge protocol on its endpoint (publishers and
    # sentinels stay on the seed endpoint, so only the subscriber side differs)
    centrifuge = bool(ctx.get("cf", 0.0))
    if centrifuge and latency:
        raise ValueError("cf=1 is for fanout and idle (no latency listener for it)")
    cls = CfCountListener if centrifuge else LatencyListener if latency else CountListener
    token = ctx.sub_token
    encode = (partial(connect_and_subscribe, token=token)  # token in the connect command
              if centrifuge else sub_msg)
    url = cf_url(ctx.url) if centrifuge else ctx.url
    kind = TEXT
    if centrifuge and ctx.get("pb", 0.0):  # pb=1: the Protobuf variant (binary frames)
        import lg_centrifuge_pb as pbl  # imports protobuf: only for these runs
        cls, kind, url = pbl.PbCountListener, pbl.BINARY, url + pbl.QUERY
        encode = partial(pbl.connect_and_subscribe, token=token)
    msgs: dict[str, bytes] = {}

    def on_connected(i: int, tr: WSTransport) -> None:
        t = topic_of(i)
        m = msgs.get(t)
        if m is None:
            m = msgs[t] = encode(t)
        tr.send(kind, m)

    conns = await connect_many(
        url,
        n,
        lambda _i: cls(sh),
        on_connected,
        concurrency=ctx.geti("concurrency", 64),
        total_timeout=ctx.get("connect_timeout", 120.0),
        headers=None if centrifuge else bearer(token),
    )
    typed: list[tuple[WSTransport, CountListener]] = []
    groups: dict[str, list[CountListener]] = {}
    for i, (tr, lis) in enumerate(conns):
        assert isinstance(lis, CountListener)
        typed.append((tr, lis))
        groups.setdefault(topic_of(i), []).append(lis)
    return typed, groups


def _sub_spread(listeners: list[CountListener]) -> Metrics:
    ns = [x.n for x in listeners]
    errors = sum(getattr(x, "errors", 0) for x in listeners)  # Centrifuge listeners
    return {"per_sub_min": min(ns, default=0), "per_sub_max": max(ns, default=0),
            "protocol_errors": errors}


async def fanout(ctx: Ctx, n_subs: int) -> Metrics:
    """One topic, ``n_subs`` subscribers, one publisher as fast as the server absorbs.

    Honesty: at most ``window`` publishes may be un-delivered (counted over all
    subscribers' received frames), so the server can't buffer its way to a number.
    """
    warmup = ctx.get("warmup", 1.0, 0.5)
    duration = ctx.get("duration", 5.0, 2.0)
    window = max(2, ctx.geti("window_frames", 32768) // n_subs)
    refill = max(1, window // 2)
    stall_timeout = ctx.get("stall_timeout", 3.0)
    sh = Shared()
    # ns=1: a topic in a namespace (bench/namespaces_bench.py configures "bench")
    topic = "bench:fanout" if ctx.geti("ns", 0) else "fanout"
    ctrl, ctrl_lis = await connect_one(ctx.publisher_url, lambda: IdleListener(sh), 10.0,
                                       headers=bearer(ctx.pub_token))
    conns, groups = await _subscribers(ctx, sh, n_subs, lambda _i: topic, latency=False)
    rounds = await confirm_subscribed(ctrl, groups, sh)
    await asyncio.sleep(0.1)
    pay = Payload(ctx.geti("size", 100))
    sent = 0
    cap = 50_000_000 // n_subs
    stalled = False
    send = ctrl.send
    with quiet_gc():
        win = Window(sh, ctx.probe, warmup, duration)
        while not win.done and sent < cap:
            outstanding = sent - sh.received // n_subs
            for _ in range(window - outstanding):
                send(TEXT, pay.publish(topic, sent))
                sent += 1
            if not await sh.wait_received((sent - window + refill) * n_subs, stall_timeout):
                stalled = True
                break
        m = win.metrics()
        expected = sent * n_subs
        await sh.wait_received(expected, ctx.get("drain_timeout", 5.0))
    m.update(
        subscribers=n_subs,
        publishes=sent,
        expected=expected,
        received=sh.received,
        loss=expected - sh.received,
        stalled=stalled,
        window_msgs=window,
        sentinel_rounds=rounds,
        disconnects=sh.disconnects,
        **_sub_spread([x for _, x in conns]),
    )
    close_all([(ctrl, ctrl_lis), *conns])
    return m


async def latency(ctx: Ctx) -> Metrics:
    """``subs`` subscribers on one topic; a separate publisher at a fixed rate."""
    n_subs = ctx.geti("subs", 100)
    rate = ctx.get("rate", 200.0)
    warmup = ctx.get("warmup", 1.0, 0.5)
    duration = ctx.get("duration", 5.0, 2.0)
    sh = Shared()
    topic = "latency"
    ctrl, ctrl_lis = await connect_one(ctx.publisher_url, lambda: IdleListener(sh), 10.0,
                                       headers=bearer(ctx.pub_token))
    conns, groups = await _subscribers(ctx, sh, n_subs, lambda _i: topic, latency=True)
    rounds = await confirm_subscribed(ctrl, groups, sh)
    await asyncio.sleep(0.1)
    pay = Payload(ctx.geti("size", 100))
    with quiet_gc():
        sh.t0_ns = time.perf_counter_ns() + int(warmup * 1e9)
        win = Window(sh, ctx.probe, warmup, duration)
        sent, lag = await paced(
            rate, warmup + duration, lambda i: ctrl.send(TEXT, pay.publish(topic, i))
        )
        m = win.metrics()
        expected = sent * n_subs
        await sh.wait_received(expected, ctx.get("drain_timeout", 5.0))
    m.update(latency_summary_ms(sh.lat))
    m.update(load_fields(rate, n_subs, m))
    m.update(subscribers=n_subs, **paced_fields(sh, rate, sent, expected, lag, rounds))
    close_all([(ctrl, ctrl_lis), *conns])
    return m


async def chat(ctx: Ctx, default_rate: float = 10000.0) -> Metrics:
    """``clients`` clients over ``topics`` topics; each topic's first member publishes.

    Total publish rate ``rate``/s spread round-robin over topics; every member
    (publisher included) receives every publish of its topic.
    """
    n = ctx.geti("clients", 1000, 1000)
    n_topics = ctx.geti("topics", 100)
    rate = ctx.get("rate", default_rate)
    warmup = ctx.get("warmup", 1.0, 0.5)
    duration = ctx.get("duration", 5.0, 2.0)
    sh = Shared()
    names = [f"room-{k}" for k in range(n_topics)]
    ctrl, ctrl_lis = await connect_one(ctx.url, lambda: IdleListener(sh), 10.0,
                                       headers=bearer(ctx.pub_token))
    conns, groups = await _subscribers(ctx, sh, n, lambda i: names[i % n_topics], latency=True)
    rounds = await confirm_subscribed(ctrl, groups, sh)
    await asyncio.sleep(0.1)
    pay = Payload(ctx.geti("size", 100))
    pubs = [conns[k][0] for k in range(n_topics)]  # client k is the first member of topic k
    sizes = [len(groups[t]) for t in names]
    expected = 0

    def publish(i: int) -> None:
        nonlocal expected
        k = i % n_topics
        pubs[k].send(TEXT, pay.publish(names[k], i))
        expected += sizes[k]

    with quiet_gc():
        sh.t0_ns = time.perf_counter_ns() + int(warmup * 1e9)
        win = Window(sh, ctx.probe, warmup, duration)
        sent, lag = await paced(rate, warmup + duration, publish)
        m = win.metrics()
        await sh.wait_received(expected, ctx.get("drain_timeout", 5.0))
    m.update(latency_summary_ms(sh.lat))
    m.update(load_fields(rate, n / n_topics, m))
    m.update(clients=n, topics=n_topics,
             **paced_fields(sh, rate, sent, expected, lag, rounds))
    close_all([(ctrl, ctrl_lis), *conns])
    return m


async def idle(ctx: Ctx) -> Metrics:
    """``conns`` connections, each subscribed to one of ``topics`` topics.

    handshakes/s = conns / (first connect -> every subscription confirmed).
    RSS/conn = server tree RSS delta (before first connect, after settle) / conns.
    """
    n = ctx.geti("conns", 10000, 2000)
    n_topics = ctx.geti("topics", 1000, 200)
    settle = ctx.get("settle", 1.0, 0.5)
    sh = Shared()
    names = [f"idle-{k}" for k in range(n_topics)]
    ctrl, ctrl_lis = await connect_one(ctx.url, lambda: IdleListener(sh), 10.0,
                                       headers=bearer(ctx.pub_token))
    await asyncio.sleep(0.2)
    rss0 = ctx.probe.rss()
    snap0 = snapshot(0, ctx.probe)
    with quiet_gc():
        t0 = time.perf_counter()
        conns, groups = await _subscribers(ctx, sh, n, lambda i: names[i % n_topics], False)
        t1 = time.perf_counter()
        rounds = await confirm_subscribed(ctrl, groups, sh, total_timeout=60.0)
        t2 = time.perf_counter()
    snap1 = snapshot(0, ctx.probe)
    await asyncio.sleep(settle)
    rss1 = ctx.probe.rss()
    w = window_metrics(snap0, snap1, ctx.probe.cpus())
    del w["deliveries_per_s"]
    m: Metrics = {
        "conns": n,
        "topics": n_topics,
        "handshakes_per_s": n / (t2 - t0),
        "connect_only_per_s": n / (t1 - t0),
        "connect_s": t1 - t0,
        "confirm_s": t2 - t1,
        **w,
        "server_cpu_us_per_handshake": 1e6 * (snap1.server_cpu - snap0.server_cpu) / n,
        "server_rss_before": rss0,
        "server_rss_after": rss1,
        "rss_per_conn_bytes": (rss1 - rss0) / n if rss0 else float("nan"),
        "sentinel_rounds": rounds,
        "disconnects": sh.disconnects,
    }
    close_all([(ctrl, ctrl_lis), *conns])
    return m


SCENARIOS: dict[str, Callable[[Ctx], Awaitable[Metrics]]] = {
    "fanout100": lambda ctx: fanout(ctx, ctx.geti("subs", 100)),
    "fanout1000": lambda ctx: fanout(ctx, ctx.geti("subs", 1000)),
    "latency": latency,
    "chat": chat,
    # the issue-20 chat loads: 1000 clients, 100 topics, 10k / 20k deliveries/s
    "chat10k": lambda ctx: chat(ctx, 1000.0),
    "chat20k": lambda ctx: chat(ctx, 2000.0),
    "idle": idle,
}
