"""Costs of the issue-9 building blocks: authorization checks, authentication, presence.

Run: ``.venv/bin/python bench/auth_presence_bench.py`` (needs Redis on 127.0.0.1:6379;
its keys use a fresh prefix and are deleted at the end). Numbers go to
docs/auth-presence-draft.md.
"""

from __future__ import annotations

import asyncio
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from pubsocket.auth import Action, Authenticator, Authorizer, Principal
from pubsocket.presence import ClientInfo, MemoryPresence, Presence
from pubsocket.presence.redis import RedisPresence

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


def per_call(label: str, stmt: str, env: dict[str, Any], number: int) -> None:
    best = min(timeit.repeat(stmt, globals=env, number=number, repeat=5)) / number
    print(f"{label:58s} {best * 1e9:10.0f} ns")


def auth_costs() -> None:
    auth = Authenticator(None, SECRET)
    token = auth.issue("alice", claims={"topics": {"subscribe": ["chat:*", "user:{sub}"]}})
    env: dict[str, Any] = {
        "A": Authorizer(), "H": Authorizer(lambda p, a, t: True), "S": Action.SUBSCRIBE,
        "none": Principal.from_claims({"sub": "alice"}),
        "claim": Principal.from_claims({"sub": "alice", "topics": {
            "subscribe": ["chat:*", "user:{sub}", "user:{sub}:*", "news:[ab]*"]}}),
        "auth": auth, "token": token, "Principal": Principal,
    }
    per_call("check: no claim, no hook", "A.check(none, S, 'chat:general')", env, 1_000_000)
    per_call("check: no claim, sync hook", "H.check(none, S, 'chat:general')", env, 1_000_000)
    per_call("check: claim of 4 patterns allows", "A.check(claim, S, 'user:alice:inbox')",
             env, 1_000_000)
    per_call("check: claim denies", "A.check(claim, S, 'secret:x')", env, 1_000_000)
    per_call("authenticate (bearer offer, JWT + Principal + topics)",
             "auth.authenticate([], ['bearer', token])", env, 5_000)
    per_call("Principal.anonymous()", "Principal.anonymous()", env, 200_000)


async def timed(label: str, n: int, call: Callable[[int], Awaitable[Any]]) -> None:
    start = time.perf_counter()
    for i in range(n):
        await call(i)
    print(f"{label:58s} {(time.perf_counter() - start) / n * 1e6:10.1f} us")


async def presence_costs() -> None:
    redis = Redis()
    await timed("redis-py PING (round-trip baseline)", 2000, lambda i: redis.ping())
    prefix = f"bench-presence-{uuid.uuid4().hex}:"
    nodes: list[tuple[str, Presence]] = [
        ("memory", MemoryPresence()), ("redis", RedisPresence(prefix=prefix))]
    n = 5000
    try:
        for name, p in nodes:
            await p.start()
            await timed(f"{name} add", n,
                        lambda i, p=p: p.add("room", ClientInfo(f"c{i}", f"u{i % 500}", {"n": i})))
            await timed(f"{name} stats ({n} clients)", 200, lambda i, p=p: p.stats("room"))
            await timed(f"{name} get ({n} clients)", 20, lambda i, p=p: p.get("room"))
            if isinstance(p, RedisPresence):
                await timed(f"redis refresh of {n} own entries", 5, lambda i, p=p: p.refresh())
            await timed(f"{name} remove", n, lambda i, p=p: p.remove("room", f"c{i}"))
            await p.close()
        many = RedisPresence(prefix=prefix)
        for start in range(0, 10_000, 32):
            await asyncio.gather(*(many.add(f"t{i}", ClientInfo(f"c{i}", "u"))
                                   for i in range(start, start + 32)))
        await timed("redis refresh of 10000 topics x 1 client", 1, lambda i: many.refresh())
        await timed("redis close() removing 10000 own entries", 1, lambda i: many.close())
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


if __name__ == "__main__":
    auth_costs()
    asyncio.run(presence_costs())
