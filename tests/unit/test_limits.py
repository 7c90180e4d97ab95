"""`ClientLimiter`: per-key token buckets, bounded in the number of keys they keep."""

from __future__ import annotations

import time

import pytest

from pubsocket.web.limits import ClientLimiter, retry_after


def test_each_key_has_its_own_burst_then_waits_for_the_rate() -> None:
    limiter = ClientLimiter(rate=2.0, burst=3)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.4 < wait <= 0.5  # one token every 0.5 s
    assert limiter.wait("a") > 0 and limiter.take("b") == 0.0  # b is untouched
    assert retry_after(wait) == "1" and retry_after(2.01) == "3"


def test_refused_takes_do_not_dig_a_deeper_hole() -> None:
    limiter = ClientLimiter(rate=10.0, burst=1)
    limiter.take("a")
    for _ in range(100):
        limiter.take("a")  # refused: spends nothing
    time.sleep(0.11)
    assert limiter.take("a") == 0.0


def test_rate_zero_never_limits_and_keeps_nothing() -> None:
    limiter = ClientLimiter(rate=0, burst=1)
    assert all(limiter.take(str(i)) == 0.0 for i in range(1000))
    assert len(limiter) == 0


@pytest.mark.parametrize("busy", [False, True])
def test_the_table_is_bounded(busy: bool) -> None:
    limiter = ClientLimiter(rate=0.001 if busy else 1e9, burst=2, max_keys=100)
    for i in range(10_000):
        limiter.take(f"ip:{i}")
    assert len(limiter) <= 100
