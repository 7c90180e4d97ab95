"""`Flusher`: marks made within one loop tick run together on the next iteration, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pubsocket.server.flush import Flusher


def recorder(log: list[str], name: str) -> Callable[[], None]:
    return lambda: log.append(name)


async def test_marks_run_on_the_next_iteration_in_order() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    log: list[str] = []
    for name in "abcd":
        flusher.mark(recorder(log, name))
    assert log == []  # nothing runs synchronously
    await asyncio.sleep(0)
    assert log == ["a", "b", "c", "d"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == ["a", "b", "c", "d"]  # each ran once


async def test_all_marks_of_a_tick_run_in_one_batch() -> None:
    loop = asyncio.get_running_loop()
    flusher = Flusher(loop)
    log: list[str] = []
    flusher.mark(recorder(log, "a"))
    loop.call_soon(recorder(log, "other"))  # scheduled after the first mark
    flusher.mark(recorder(log, "b"))  # marked later in the same tick: same batch
    await asyncio.sleep(0)
    assert log == ["a", "b", "other"]


async def test_a_mark_during_a_flush_runs_on_the_following_iteration() -> None:
    loop = asyncio.get_running_loop()
    flusher = Flusher(loop)
    log: list[str] = []

    def first() -> None:
        log.append("first")
        flusher.mark(recorder(log, "again"))

    flusher.mark(first)
    flusher.mark(recorder(log, "second"))
    await asyncio.sleep(0)
    assert log == ["first", "second"]
    await asyncio.sleep(0)
    assert log == ["first", "second", "again"]


async def test_ticks_are_independent() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    log: list[str] = []
    flusher.mark(recorder(log, "1"))
    await asyncio.sleep(0)
    flusher.mark(recorder(log, "2"))
    flusher.mark(recorder(log, "3"))
    await asyncio.sleep(0)
    assert log == ["1", "2", "3"]
    await asyncio.sleep(0)
    assert log == ["1", "2", "3"]
