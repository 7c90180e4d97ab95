"""`Debug` (tina4's logging facade) and `configure_logging`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from pubsocket import Debug, Settings
from pubsocket.log import configure_logging


class Recorder(logging.Handler):
    """A real handler that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records reaching the ``pubsocket`` logger tree; its state is restored afterwards."""
    root = logging.getLogger("pubsocket")
    app = logging.getLogger("pubsocket.app")
    saved = (root.level, list(root.handlers), root.propagate, app.level)
    recorder = Recorder()
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    app.setLevel(logging.NOTSET)
    try:
        yield recorder.records
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        root.propagate = saved[2]
        app.setLevel(saved[3])


@pytest.mark.parametrize(
    ("method", "level"),
    [(Debug.debug, logging.DEBUG), (Debug.info, logging.INFO),
     (Debug.warning, logging.WARNING), (Debug.error, logging.ERROR)],
)
def test_debug_joins_args_with_spaces_on_the_app_logger(
    records: list[logging.LogRecord], method: Callable[..., None], level: int
) -> None:
    method("WEBSOCKET", {"a": 1}, 42, None)
    assert len(records) == 1
    record = records[0]
    assert record.name == "pubsocket.app"
    assert record.levelno == level
    assert record.getMessage() == "WEBSOCKET {'a': 1} 42 None"


def test_message_with_percent_signs_is_not_formatted(records: list[logging.LogRecord]) -> None:
    Debug.info("100%", "%s", "%(x)d")
    assert records[0].getMessage() == "100% %s %(x)d"


def test_no_args_logs_empty_message(records: list[logging.LogRecord]) -> None:
    Debug.warning()
    assert records[0].getMessage() == ""


def test_configure_logging_warning_suppresses_info_and_debug(
    records: list[logging.LogRecord],
) -> None:
    configure_logging("WARNING")
    Debug.debug("d")
    Debug.info("i")
    Debug.warning("w")
    Debug.error("e")
    assert [r.getMessage() for r in records] == ["w", "e"]


def test_configure_logging_debug_lets_everything_through(
    records: list[logging.LogRecord],
) -> None:
    configure_logging("DEBUG")
    Debug.debug("d")
    Debug.info("i")
    assert [r.getMessage() for r in records] == ["d", "i"]


def test_configure_logging_from_tina4_level(records: list[logging.LogRecord]) -> None:
    configure_logging(Settings.from_env(environ={"TINA4_DEBUG_LEVEL": "Error"},
                                        env_file=None).log_level)
    Debug.warning("w")
    Debug.error("e")
    assert [r.getMessage() for r in records] == ["e"]


def test_configure_logging_unknown_level_falls_back_to_info(
    records: list[logging.LogRecord],
) -> None:
    configure_logging("CHATTY")
    Debug.debug("d")
    Debug.info("i")
    assert [r.getMessage() for r in records] == ["i"]


def test_configure_logging_installs_one_handler(records: list[logging.LogRecord]) -> None:
    root = logging.getLogger("pubsocket")
    before = len(root.handlers)
    configure_logging("INFO")
    configure_logging("DEBUG")
    configure_logging("WARNING")
    assert len(root.handlers) == before + 1
    assert root.level == logging.WARNING
