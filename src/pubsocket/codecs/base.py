"""The codec interface: one wire protocol's parsing and encoding, no I/O.

A codec turns one inbound message into commands (`parse`) and the hub's results into
message payloads (the transport frames them). A codec says whether its protocol is
binary (`binary`): the session closes a text codec's connection on a binary message
(1003, "text frames only"), so a text codec's `count` and `parse` see `str` only; a
binary codec gets `bytes` (and whatever text messages its peer sends). The hub encodes
each publication once per codec in use and hands the same bytes to every subscriber of
that codec. An encoder that returns None means "this protocol sends nothing here" (plain
mode sends no acks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from ..brokers.base import HistoryPage, Position, Publication
from ..errors import ProtocolViolation
from ..presence.base import ClientInfo, Stats
from ..protocol import (
    CmdId,
    Command,
    ErrorCode,
    Heartbeat,
    History,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    SubscribeResult,
)

Parsed = Command | ProtocolViolation
# The position of a topic without history: a gap "after" it says only that something
# may be missing, not what (docs/protocol.md "Gaps").
UNKNOWN_RANGE = Position(0, "")


class Codec(ABC):
    """One wire protocol. Instances are stateless and shared by every connection."""

    name: str = ""
    # Whether clients of this protocol can refresh their token over the socket (then
    # they get an expiry notice and a grace period instead of a close at exp).
    refreshable: bool = False
    # Whether its messages are binary WebSocket messages (then `count`/`parse` are given
    # bytes), not text (given str); the session refuses the other kind with 1003.
    binary: bool = False
    # Whether a history command on a topic that keeps no history is refused
    # (`NotAvailable`: Centrifuge's 108, as Centrifugo answers) rather than answered
    # with an empty page at position 0 (pubsocket.v1, our HTTP API).
    requires_history: bool = False

    def server_side(self) -> Codec:
        """The codec for subscriptions the server made (not the client): the same bytes
        unless the protocol tells their losses differently (Centrifuge: a gap is a
        reconnecting disconnect, since the SDK cannot resubscribe them itself)."""
        return self

    def count(self, data: str | bytes) -> int:
        """An upper bound on the commands in `data`, found without parsing it (the
        session charges and caps them before `parse` does any work). One command per
        message unless the protocol batches."""
        return 1

    @abstractmethod
    def parse(self, data: str | bytes) -> Sequence[Parsed]:
        """The commands in one message, in order; a malformed one stands in the
        sequence as the `ProtocolViolation` its error reply is made from. A text codec
        is given `str` only, a `binary` one `bytes` only (see the module docstring)."""

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

    def lost(self, topic: str) -> bytes | None:
        """The notice that publications of `topic`, a topic without history (no
        positions), may have been lost: the broker link dropped and came back. None: the
        protocol cannot say so, and the hub closes the subscriber with 1012 instead."""
        return self.gap(topic, UNKNOWN_RANGE)

    # Pushes and replies of the access and presence features. A protocol without them
    # (plain mode) keeps these defaults and sends nothing.
    def refreshed(self, cmd: Refresh, expires_at: float | None) -> bytes | None:
        """The reply to an accepted token refresh."""
        return None

    def heartbeat(self, interval: float) -> bytes | None:
        """The application ping sent every `interval` seconds to a connection that asked
        for it, so a client that cannot see WebSocket pings notices a dead link. None:
        the codec has none (its clients rely on their own protocol's pings)."""
        return None

    def heartbeat_on(self, cmd: Heartbeat, interval: float) -> bytes | None:
        """The answer to a `heartbeat` command: pings every `interval` s (0: none)."""
        return self.done(cmd)

    def expiring(self, expires_at: float) -> bytes | None:
        """The notice that the connection's token expires at `expires_at` (Unix time)."""
        return None

    def unsubscribed(self, topic: str, reason: str) -> bytes | None:
        """The notice that the server ended the connection's subscription to `topic`."""
        return None

    def presence(self, cmd: Presence, clients: Mapping[str, ClientInfo]) -> bytes | None:
        """The reply to a presence query."""
        return None

    def presence_stats(self, cmd: Presence, stats: Stats) -> bytes | None:
        """The reply to a presence_stats query."""
        return None

    def join(self, topic: str, client: ClientInfo) -> bytes | None:
        """The push that a client joined `topic` (see `join_leave_per_client`)."""
        return None

    def leave(self, topic: str, client: ClientInfo) -> bytes | None:
        """The push that a client left `topic` (see `join_leave_per_client`)."""
        return None

    @property
    def join_leave_per_client(self) -> bool:
        """True when `join`/`leave` are pushed for every client of a user (Centrifuge),
        False for its first/last connection only (pubsocket.v1)."""
        return False

    @property
    def replay_in_reply(self) -> bool:
        """True when `subscribed` carries the replayed publications itself (else the
        session sends each as a delivery right after the reply)."""
        return False
