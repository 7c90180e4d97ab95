"""`Debug`: tina4's logging facade over the standard `logging` module.

`Debug.info("WEBSOCKET", data, ws)` joins its arguments with spaces and logs them on the
``pubsocket.app`` logger. The level is set once by `configure_logging(settings)` (the CLI
does it from `PUBSOCKET_LOG_LEVEL` / `TINA4_DEBUG_LEVEL`); importing does nothing.
The framework's own loggers live under ``pubsocket.*`` and never log payloads or tokens.
"""

from __future__ import annotations

import logging

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
