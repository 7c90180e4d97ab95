"""A bounded ring of the last WARNING+ records of the ``pubsocket`` loggers (for /admin).

`install()` adds one `RecentHandler` to the ``pubsocket`` logger, once per process
(idempotent: apps share it, as they share the logger tree). Each record keeps only its
time, level, logger name and formatted message cut to `MAX_MESSAGE` characters: never
the traceback or exception text, so the page shows what happened, not the internals.
The deque's append and the copy run under a lock, so records from other threads
(``publish_threadsafe`` callers, the broker's libraries) are safe.

Adding a handler would silence Python's last-resort stderr output for an app that never
configured logging; so when this handler is the only one a record reaches, it passes
the record on to `logging.lastResort` as Python would have.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TypedDict

MAX_RECORDS = 50
MAX_MESSAGE = 500
ROOT = "pubsocket"


class RecentRecord(TypedDict):
    """One kept log record."""

    time: float  # seconds since the epoch (record.created)
    level: str
    logger: str
    message: str


class RecentHandler(logging.Handler):
    """Keeps the last `capacity` records at WARNING or above."""

    def __init__(self, capacity: int = MAX_RECORDS) -> None:
        super().__init__(logging.WARNING)
        self._ring: deque[RecentRecord] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # bad %-args: keep the template
            message = str(record.msg)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        entry = RecentRecord(time=record.created, level=record.levelname,
                             logger=record.name, message=message)
        with self._guard:
            self._ring.append(entry)
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and self._alone(record.name):
            last.handle(record)

    def _alone(self, name: str) -> bool:
        """True when no other handler sees records of logger `name`."""
        logger: logging.Logger | None = logging.getLogger(name)
        for _ in range(64):  # logger trees are shallow; bounded all the same
            if logger is None:
                return True
            if any(h is not self for h in logger.handlers):
                return False
            if not logger.propagate:
                return True
            logger = logger.parent
        return False

    def records(self) -> list[RecentRecord]:
        """The kept records, oldest first (a copy)."""
        with self._guard:
            return list(self._ring)

    def clear(self) -> None:
        """Forget every kept record."""
        with self._guard:
            self._ring.clear()


def install() -> RecentHandler:
    """The process's handler on the ``pubsocket`` logger, added on the first call."""
    root = logging.getLogger(ROOT)
    for handler in root.handlers:
        if isinstance(handler, RecentHandler):
            return handler
    handler = RecentHandler()
    root.addHandler(handler)
    return handler
