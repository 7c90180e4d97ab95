"""What a subscription yields (`Message`, `Gap`, and on request `Join`, `Leave`) and
the `Subscription` itself.

A subscription's events wait in a bounded queue (`queue_size`, default 10 000). When it
is full the subscription ends with `Overflow` (after the events already queued): growing
without bound would hide a stuck consumer, and dropping would lose messages behind the
caller's back. Resubscribe (from `sub.offset`/`sub.epoch`, the position of the last
event queued) to carry on: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from .errors import Overflow

if TYPE_CHECKING:
    from .connection import Client

log = logging.getLogger("pubsocket.client")


@dataclass(frozen=True)
class Sender:
    """Who published a message, as the server attests it (the envelope's ``from``):
    `user` is the publisher's token ``sub`` (None: anonymous), `client` its connection
    id, `info` its token's ``info`` claim (None when it has none)."""

    user: str | None
    client: str
    info: Any = None

    @classmethod
    def parse(cls, value: object) -> Sender | None:
        """The sender of a ``from`` field; None when absent or not an object."""
        if not isinstance(value, dict):
            return None
        user, client = value.get("user"), value.get("client")
        return cls(user if isinstance(user, str) else None,
                   client if isinstance(client, str) else "", value.get("info"))


@dataclass(frozen=True)
class Message:
    """One publication: `offset` is None on topics without history; `publisher` is
    None for server-side publishes (HTTP API with the API key, `hub.publish`) and in
    `Client.history` results."""

    topic: str
    data: Any
    offset: int | None
    publisher: Sender | None = None


@dataclass(frozen=True)
class Gap:
    """Messages may be missing before this point. `reason` is ``"not_recovered"`` (a
    resubscribe was answered ``recovered: false``), ``"gap"`` (the server's gap notice);
    live delivery continues after (`offset`, `epoch`). Reload state another way (e.g.
    `Client.history`). On a topic without history the notice has offset 0 and epoch
    ``""``: the server's broker link dropped, and what was lost is unknown."""

    topic: str
    offset: int | None
    epoch: str | None
    reason: Literal["not_recovered", "gap"]


@dataclass(frozen=True)
class Join:
    """The first connection of `user` subscribed to `topic` (a presence notice; `info`
    is its token's ``info`` claim, `client` the joining connection's id)."""

    topic: str
    user: str | None
    info: Any
    client: str


@dataclass(frozen=True)
class Leave:
    """The last connection of `user` left `topic` (`client`: the connection that left)."""

    topic: str
    user: str | None
    info: Any
    client: str


Delivery = Message | Gap
"""What every subscription yields."""
PresenceEvent = Join | Leave
"""What a subscription with ``presence_events=True`` (or `on_join`/`on_leave`) adds."""
Event = Message | Gap | Join | Leave
"""Everything a subscription can yield."""
E = TypeVar("E", bound=Event)
Callback = Callable[[Any], Awaitable[None] | None]


class Subscription(Generic[E]):
    """``async for event in sub`` yields `Message` and `Gap` in order, exactly once
    (`Subscription[Delivery]`); subscribed with ``presence_events=True`` also the
    topic's `Join` and `Leave` notices in arrival order (`Subscription[Event]`).
    Presence notices are live only: nothing recovers the ones missed while
    reconnecting (reload them with `Client.presence`).

    Iteration ends (StopAsyncIteration) after `unsubscribe()` or `Client.close()`, and
    raises when the subscription failed: `Overflow`, `Forbidden`/`Unsubscribed` (the
    server ended it), `AuthError`/`ClientClosed` (the client gave up reconnecting).
    `offset` and `epoch` are the position of the last event queued (what a reconnect,
    or a resubscribe after `Overflow`, recovers from). One `Subscription` per topic and client.
    """

    def __init__(self, client: Client, topic: str, queue_size: int,
                 presence_events: bool = False) -> None:
        self.topic = topic
        self.presence_events = presence_events  # queue Join/Leave too
        self.offset: int | None = None
        self.epoch: str | None = None
        self.confirmed = False  # the server acknowledged it (so a reconnect resubscribes it)
        self._client = client
        self._items: deque[E] = deque()
        self._size = queue_size
        self._wake = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._worker: asyncio.Task[None] | None = None

    # -- consumer side ------------------------------------------------------------------

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E:
        while not self._items:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    @property
    def active(self) -> bool:
        """True until the subscription ended (by either side)."""
        return not self._ended

    async def unsubscribe(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop receiving; iteration ends after the events already queued. Idempotent."""
        await self._client._unsubscribe(self, timeout)

    # -- client side --------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        """Queue a live or replayed message: a duplicate (an offset already queued) is
        skipped. The position moves only once the message is queued, so after an
        `Overflow` (`offset`, `epoch`) still names the last queued event and resuming
        from it replays the message that did not fit."""
        offset = message.offset
        if offset is not None and self.offset is not None and offset <= self.offset:
            return
        if self._push(message) and offset is not None:
            self.offset = offset

    def _push(self, event: Event) -> bool:
        """Queue `event`; False when it was not queued (ended, not wanted, or the queue
        is full: then the subscription ends with `Overflow` and the client drops it)."""
        if self._ended or (isinstance(event, Join | Leave) and not self.presence_events):
            return False
        if len(self._items) >= self._size:
            self._finish(Overflow(f"{self.topic}: more than {self._size} events queued"))
            self._client._drop(self)
            return False
        self._items.append(cast(E, event))
        self._wake.set()
        return True

    def _finish(self, error: BaseException | None = None) -> None:
        """End the subscription: iterators drain what is queued, then stop (or raise)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wake.set()

    def _start_callbacks(self, handlers: dict[type, Callback | None],
                         on_error: Callback | None) -> None:
        """Callback form: a task consumes the queue and calls the (sync or async)
        handler of each event's type in order; a callback that raises is logged and does
        not stop it. When the subscription fails, `on_error(exception)` is called (the
        failure is logged when there is no `on_error`)."""

        async def consume() -> None:
            try:
                async for event in self:
                    await _call(handlers.get(type(event)), event)
            except Exception as exc:  # the subscription failed; nobody iterates to see it
                if on_error is None:
                    log.warning("subscription to %r ended", self.topic, exc_info=True)
                else:
                    await _call(on_error, exc)

        async def _call(handler: Callback | None, arg: object) -> None:
            if handler is None:
                return
            try:
                result = handler(arg)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("subscription callback for %r raised", self.topic)

        self._worker = asyncio.get_running_loop().create_task(consume())
