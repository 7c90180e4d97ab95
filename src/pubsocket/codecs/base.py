"""The codec interface: one wire protocol's parsing and encoding, no I/O.

A codec turns one inbound text message into commands (`parse`) and the hub's results into
message payloads (the transport frames them). The hub encodes each publication once per
codec in use and hands the same bytes to every subscriber of that codec. An encoder that
returns None means "this protocol sends nothing here" (plain mode sends no acks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ..brokers.base import HistoryPage, Position, Publication
from ..errors import ProtocolViolation
from ..protocol import CmdId, Command, ErrorCode, History, Publish, Subscribe, SubscribeResult

Parsed = Command | ProtocolViolation


class Codec(ABC):
    """One wire protocol. Instances are stateless and shared by every connection."""

    name: str = ""

    @abstractmethod
    def parse(self, text: str) -> Sequence[Parsed]:
        """The commands in one text message, in order; a malformed one stands in the
        sequence as the `ProtocolViolation` its error reply is made from."""

    @abstractmethod
    def publication(self, topic: str, pub: Publication) -> bytes:
        """A delivery of `pub` on `topic` (encoded once per publication and codec)."""

    @abstractmethod
    def subscribed(self, cmd: Subscribe, result: SubscribeResult) -> bytes | None:
        """The reply to a subscribe that took effect."""

    @abstractmethod
    def done(self, cmd: Command) -> bytes | None:
        """The reply to an unsubscribe (or any command with nothing else to say)."""

    @abstractmethod
    def published(self, cmd: Publish, pub: Publication) -> bytes | None:
        """The reply to a publish the broker accepted."""

    @abstractmethod
    def history(self, cmd: History, page: HistoryPage) -> bytes | None:
        """The reply to a history read."""

    @abstractmethod
    def error(self, code: ErrorCode, message: str, cmd_id: CmdId | None) -> bytes:
        """An error reply. `message` is fixed server text, never client input."""

    @abstractmethod
    def gap(self, topic: str, position: Position) -> bytes | None:
        """The notice that live delivery of `topic` skipped publications the hub could not
        fill from history; `position` is where the stream continues from."""

    @property
    def replay_in_reply(self) -> bool:
        """True when `subscribed` carries the replayed publications itself (else the
        session sends each as a delivery right after the reply)."""
        return False
