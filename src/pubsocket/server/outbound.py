"""The outbound side of a native WebSocket connection: `WriteQueue` (server/writes.py:
one write per loop tick, the outbound budget, the stall timer) plus what only a
WebSocket has: the protocol's own bytes (`_pump`), the drain future `send()` waits on,
and a slow consumer closed with 4008. `Outbound` is mixed into `WSConnection`, which
owns the state it uses; its rarely used state (the drain future, the stall timer) is
kept aside until first used (`seldom.Rarely`, itself a `WriteQueue`).
"""

from __future__ import annotations

import logging

from websockets.protocol import Protocol

from ..errors import CloseCode
from .seldom import Rarely
from .writes import HIGH_WATER

__all__ = ["HIGH_WATER", "Outbound"]

log = logging.getLogger("pubsocket.server")


class Outbound(Rarely):
    """The write path of `WSConnection` (see the module docstring)."""

    # `WriteQueue` holds the write state; `Rarely` shows the rarely used fields.
    __slots__ = ()

    _proto: Protocol

    def close_nowait(self, code: int, reason: str = "") -> None:
        raise NotImplementedError

    def _cut_slow(self, budget: int) -> None:
        log.info("closing a slow consumer (outbound buffer over %d bytes)", budget)
        self.close_nowait(CloseCode.SLOW_CONSUMER, "slow consumer")

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self._state.loop.create_future()
        self._arm_stall()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None
        self._disarm_stall()

    # -- outbound ----------------------------------------------------------------------
    def _pump(self) -> None:
        """Move what the protocol wants to send into the queue; act on EOF."""
        for data in self._proto.data_to_send():
            if data:
                self._queue(data)
            else:  # SEND_EOF: the closing handshake is over (or failed): drop TCP
                self._flush()
                self._transport.close()
