"""`Debug`: tina4's logging facade over the standard `logging` module.

`Debug.info("WEBSOCKET", data, ws)` joins its arguments with spaces and logs them on the
``pubsocket.app`` logger. The level is set once by `configure_logging(settings)` (the CLI
does it from `PUBSOCKET_LOG_LEVEL` / `TINA4_DEBUG_LEVEL`); importing does nothing.
The framework's own loggers live under ``pubsocket.*`` and never log payloads or tokens.
Refusals (a limit hit, a bad token) go through `refusals` (`Throttled`, on
``pubsocket.limits``), a refused authentication through `unauthorized`.
"""

from __future__ import annotations

import logging
import time

from .errors import Unauthorized

APP_LOGGER = logging.getLogger("pubsocket.app")


def _join(args: tuple[object, ...]) -> str:
    return " ".join(str(a) for a in args)


class Debug:
    """Application logging with tina4's names. All methods are static."""

    @staticmethod
    def debug(*args: object) -> None:
        """Log at DEBUG."""
        if APP_LOGGER.isEnabledFor(logging.DEBUG):
            APP_LOGGER.debug("%s", _join(args))

    @staticmethod
    def info(*args: object) -> None:
        """Log at INFO."""
        if APP_LOGGER.isEnabledFor(logging.INFO):
            APP_LOGGER.info("%s", _join(args))

    @staticmethod
    def warning(*args: object) -> None:
        """Log at WARNING."""
        APP_LOGGER.warning("%s", _join(args))

    @staticmethod
    def error(*args: object) -> None:
        """Log at ERROR."""
        APP_LOGGER.error("%s", _join(args))


def configure_logging(level: str) -> None:
    """Set the ``pubsocket`` logger tree to `level` with one stderr handler (idempotent)."""
    root = logging.getLogger("pubsocket")
    root.setLevel(logging.getLevelName(level) if isinstance(logging.getLevelName(level), int)
                  else logging.INFO)
    if not any(getattr(h, "_pubsocket", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._pubsocket = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class Throttled:
    """Logs refusals (a limit hit, a bad token) at most once per `interval` seconds per
    kind, counting what it held back, so a flood of bad requests cannot flood the log.

    ``refusals.warn("history_too_large", peer)`` logs ``limit history_too_large by
    127.0.0.1:5555 (+12 more since the last)``. Never pass a token or a payload: the
    peer address and the limit's name are all a refusal log line carries.
    """

    __slots__ = ("_held", "_interval", "_last", "_logger")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, kind: str, peer: object = None, level: int = logging.WARNING,
             detail: str = "") -> bool:
        """Log one refusal of `kind` by `peer` unless one was logged within the
        interval (then count it). True when a line was written. `detail`, a fixed text
        (never client input), follows the peer: ``...:5555: bad signature``; it does not
        split the kind's throttling."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        if len(self._last) > 1024:  # kinds are a closed set; never grow without bound
            self._last.clear()
            self._held.clear()
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        self._logger.log(level, "limit %s by %s%s%s", kind, peer if peer is not None else "?",
                         f": {detail}" if detail else "",
                         f" (+{held} more since the last)" if held else "")
        return True


refusals = Throttled(logging.getLogger("pubsocket.limits"))


def unauthorized(exc: Unauthorized, peer: object) -> None:
    """Log a refused authentication once, under its `kind`: ``invalid_token`` with the
    reason (``bad signature``...; never the token), ``token_expired`` at INFO (a client
    holding an old token is routine: the SDKs fetch a new one), ``connect_hook``.
    Called where the refusal is answered (`App._dispatch` for every 401, a Centrifuge
    connect), never where it is raised, so each refusal is one line."""
    refusals.warn(exc.kind, peer,
                  logging.INFO if exc.kind == "token_expired" else logging.WARNING,
                  exc.message if exc.kind == "invalid_token" else "")
