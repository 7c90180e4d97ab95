"""The counters a transport keeps for /metrics (the native server fills them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TransportStats:
    """Transport counters since start. Plain integers, bumped on the hot path."""

    ws_opened: int = 0
    ws_closed: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    dropped: int = 0  # frames dropped because the connection was closing
    slow_closes: int = 0
    http_requests: int = 0
    http_write_timeouts: int = 0  # HTTP connections aborted: response unread
