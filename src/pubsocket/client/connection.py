"""`Client`: one `pubsocket.v1` connection that reconnects, resubscribes and recovers.

One task (`reconnect.run`) owns the socket: it hands each frame to the `Router`
(router.py, synchronous: replies to their waiting command by `id`, deliveries to their
`Subscription`) and, when the connection drops, fails the commands still waiting
(`ClientClosed`: never sent twice, so at most once), reconnects, resubscribes from the
last offsets and only then lets waiting commands through (reconnect.py has the details).

This module holds the client's state, its lifecycle (`start`, `close`, `_attach`,
`_end`, `_set_state`, which the task drives), the token refresh, and the commands that
subscribe, unsubscribe and publish, all sent through `_command`. The handshake and
frame reading are dial.py; `history`, `presence` and `presence_stats` are the
`Queries` mixin of queries.py.

Every command takes `timeout`: a per-call override of `Client.timeout`, the deadline for
the reply (connection wait included); hence the ASYNC109 exemptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any, Literal, overload

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .backoff import Backoff, ExponentialBackoff
from .dial import Token, get_token, open_ws, refusal_reason
from .errors import (
    AuthError,
    ClientClosed,
    ClientError,
    CommandError,
    ConnectFailed,
    Forbidden,
    Timeout,
)
from .queries import Queries
from .reconnect import run
from .router import Handler, Router, error_of
from .subscription import Callback, Delivery, Event, Gap, Join, Leave, Message, Subscription

log = logging.getLogger("pubsocket.client")

State = Literal["connecting", "connected", "reconnecting", "closed"]


class Client(Queries):
    """A `pubsocket.v1` client; use ``async with connect(url, token=...) as client``.

    `token` is a string, or a sync or async callable returning one, called on every
    (re)connect and when the server says the token is expiring (then sent as
    ``refresh``). `timeout` bounds every command (waiting for a connection included)
    unless the call passes its own. After `max_auth_failures` consecutive 401s while
    reconnecting (or a close 4003) the client gives up with `AuthError`; after a close
    1002/1003/1007/1008/1009, or `max_attempts` failed attempts, with `ClientClosed`.
    Either way every subscription and waiting call raises that error and `state`
    becomes ``"closed"``. `on_state(state)` is called on every change of `state`.
    `heartbeat`: the client asks for the server's pings on every connection and, when
    nothing arrives for the server's interval + min(interval, 5) s (default 30 s), takes
    the link as dead (a half-open one never closes by itself) and reconnects with
    recovery; a number overrides that bound (seconds), 0 turns it off.
    """

    def __init__(self, url: str, *, token: Token = None, backoff: Backoff | None = None,
                 timeout: float = 10.0, open_timeout: float = 10.0,
                 max_auth_failures: int = 3, max_attempts: int | None = None,
                 queue_size: int = 10_000, max_size: int | None = 16 * 2**20,
                 heartbeat: float | None = None,
                 on_state: Callable[[State], None] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.on_state = on_state
        self._token = token
        self._backoff: Backoff = backoff if backoff is not None else ExponentialBackoff()
        self._open_timeout = open_timeout
        self._max_auth_failures = max(1, max_auth_failures)
        self._max_attempts = max_attempts
        self._queue_size = queue_size
        self._max_size = max_size
        self._state: State = "closed"
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while connected, and once the client ended
        self._ids = itertools.count(1)
        self._router = Router(self._refresh_soon)
        self._runner: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._failure: ClientError | None = None
        self._closing = False
        self._heartbeat = heartbeat
        self._silence: float | None = None  # seconds of silence that mean a dead link
        self._leaving: dict[str, asyncio.Task[None]] = {}  # topic -> best-effort unsubscribe

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``"connecting"`` | ``"connected"`` | ``"reconnecting"`` | ``"closed"``."""
        return self._state

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect once. Raises `AuthError` (401), `ConnectFailed` (anything else, an
        invalid URL included)."""
        if self._runner is not None:
            raise ClientError("the client was already started")
        self._set_state("connecting")
        try:
            ws = await self._open()
        except InvalidStatus as exc:
            self._set_state("closed")
            status = exc.response.status_code
            why = refusal_reason(exc.response)
            why = f": {why}" if why else ""
            if status == 401:
                raise AuthError(f"the server refused the token (401){why}") from None
            raise ConnectFailed(f"the server refused the connection (HTTP {status}){why}"
                                ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._set_state("closed")
            raise ConnectFailed(f"cannot connect to {self.url}: {exc}") from None
        except (InvalidURI, ValueError) as exc:  # ValueError: a bad port or IPv6 literal
            self._set_state("closed")
            reason = exc.msg if isinstance(exc, InvalidURI) else str(exc)
            raise ConnectFailed(f"{self.url} is not a valid ws:// or wss:// URL ({reason})"
                                ) from None
        except BaseException:
            self._set_state("closed")
            raise
        self._attach(ws)
        self._runner = asyncio.get_running_loop().create_task(run(self, ws))

    async def close(self) -> None:
        """Close the connection; subscriptions end (iteration stops), waiting calls raise
        `ClientClosed`. Idempotent."""
        if self._closing:
            return
        self._closing = True
        for task in (self._runner, self._refresher, *self._leaving.values()):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._end(ClientClosed("the client is closed"), None)

    def _set_state(self, state: State) -> None:
        if state != self._state:
            self._state = state
            if self.on_state is not None:
                self.on_state(state)

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ready.set()
        self._set_state("connected")

    def _end(self, failure: ClientError, sub_error: ClientError | None) -> None:
        """The client is over: fail waiting calls with `failure`, end subscriptions
        (raising `sub_error`, or just stopping when None)."""
        self._failure = failure
        self._ws = None
        self._router.drop_pending(failure)
        for sub in list(self._router.subs.values()):
            sub._finish(sub_error)
            if sub._worker is not None and sub_error is None:
                sub._worker.cancel()
        self._router.subs.clear()
        self._ready.set()  # wake waiters so they see the failure
        self._set_state("closed")

    # -- the connection task ------------------------------------------------------------

    def _silent(self) -> float | None:
        return self._silence

    async def _open(self) -> ClientConnection:
        return await open_ws(self.url, await get_token(self._token),
                             open_timeout=self._open_timeout, max_size=self._max_size)

    def _refresh_soon(self) -> None:
        if callable(self._token) and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            token = await get_token(self._token)
            await self._command({"action": "refresh", "token": token}, None)
        except ClientError as exc:
            log.warning("token refresh failed (%s); the server will close with 4001 and "
                        "the client reconnect", exc)
        except Exception:  # the token callable failed; same outcome as a refused refresh
            log.warning("token refresh: the token callable raised", exc_info=True)

    # -- commands -----------------------------------------------------------------------

    async def _command(self, body: dict[str, Any], timeout: float | None,  # noqa: ASYNC109
                       on_reply: Handler | None = None) -> dict[str, Any]:
        """Send `body` with a fresh id once connected; its reply (error replies raised)."""
        limit = self.timeout if timeout is None else timeout
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def handle(frame: dict[str, Any]) -> None:
            if on_reply is not None and frame.get("type") != "error":
                on_reply(frame)
            if not future.done():
                future.set_result(frame)

        cid = -1
        try:
            async with asyncio.timeout(limit):
                ws = await self._connection()
                cid = next(self._ids)
                text = orjson.dumps({**body, "id": cid}).decode()
                self._router.pending[cid] = (handle, future)
                try:
                    await ws.send(text)
                except ConnectionClosed:
                    raise ClientClosed("the connection dropped while sending") from None
                reply = await future
        except TimeoutError:
            raise Timeout(f"no reply to {body.get('action')} within {limit} s") from None
        finally:
            self._router.pending.pop(cid, None)
        if reply.get("type") == "error":
            raise error_of(reply)
        return reply

    async def _connection(self) -> ClientConnection:
        for _ in range(1000):  # each turn waits for a state change; bounded all the same
            if self._failure is not None:
                raise self._failure
            if self._runner is None:
                raise ClientClosed("the client is not started")
            if self._ws is not None:
                return self._ws
            self._ready.clear()
            await self._ready.wait()
        raise ClientClosed("the connection kept changing")  # pragma: no cover

    # The type of what iteration yields follows `presence_events`.
    @overload
    async def subscribe(self, topic: str, *, since: tuple[int, str] | None = ...,
                        on_message: Callback | None = ..., on_gap: Callback | None = ...,
                        on_join: Callback | None = ..., on_leave: Callback | None = ...,
                        on_error: Callback | None = ..., presence_events: Literal[False] = ...,
                        timeout: float | None = ...) -> Subscription[Delivery]: ...  # noqa: ASYNC109
    @overload
    async def subscribe(self, topic: str, *, since: tuple[int, str] | None = ...,
                        on_message: Callback | None = ..., on_gap: Callback | None = ...,
                        on_join: Callback | None = ..., on_leave: Callback | None = ...,
                        on_error: Callback | None = ..., presence_events: Literal[True],
                        timeout: float | None = ...) -> Subscription[Event]: ...  # noqa: ASYNC109
    async def subscribe(self, topic: str, *, since: tuple[int, str] | None = None,
                        on_message: Callback | None = None, on_gap: Callback | None = None,
                        on_join: Callback | None = None, on_leave: Callback | None = None,
                        on_error: Callback | None = None, presence_events: bool = False,
                        timeout: float | None = None) -> Subscription[Any]:  # noqa: ASYNC109
        """Subscribe once the server confirmed it. `since` = (offset, epoch) recovers from
        there (a `Gap` first when it cannot). With any of `on_message`/`on_gap`/
        `on_join`/`on_leave` (sync or async) a task calls them in order, and
        `on_error(exception)` when the subscription fails; otherwise iterate the
        subscription: `Message | Gap`, plus `Join | Leave` with ``presence_events=True``.
        Raises `Forbidden`, `Timeout`, `CommandError`, `ClientClosed`, or `ClientError`
        when this client already follows `topic`."""
        if topic in self._router.subs:
            raise ClientError(f"already subscribed to {topic!r}")
        callbacks = on_message, on_gap, on_join, on_leave
        presence = presence_events or on_join is not None or on_leave is not None
        sub: Subscription[Any] = Subscription(self, topic, self._queue_size, presence)
        body: dict[str, Any] = {"action": "subscribe", "topic": topic}
        if since is not None:
            body["since"] = {"offset": since[0], "epoch": since[1]}
        leaving = self._leaving.get(topic)
        if leaving is not None:  # our unsubscribe of the last one goes first
            await asyncio.wait({leaving}, timeout=self.timeout)
        if topic in self._router.subs:
            raise ClientError(f"already subscribed to {topic!r}")
        self._router.subs[topic] = sub
        with_since = since is not None
        try:
            await self._command(body, timeout,
                                lambda frame: self._router.subscribed(sub, frame, with_since))
        except (Forbidden, CommandError):  # refused: the server holds nothing
            self._forget(sub)
            sub._finish()
            raise
        except BaseException:  # cancelled, timed out, dropped: it may hold it
            self._drop(sub)
            sub._finish()
            raise
        if any(cb is not None for cb in callbacks) or on_error is not None:
            sub._start_callbacks(dict(zip((Message, Gap, Join, Leave), callbacks, strict=True)),
                                 on_error)
        return sub

    def _forget(self, sub: Subscription[Any]) -> None:
        self._router.forget(sub)

    def _drop(self, sub: Subscription[Any]) -> None:
        """Forget `sub` locally and, since the server may still hold it, send a
        best-effort unsubscribe in the background (never awaited by the caller, errors
        only logged at debug level); a new subscribe to the topic waits for it."""
        if self._router.subs.get(sub.topic) is not sub:
            return
        self._router.forget(sub)
        if self._failure is not None or self._closing or sub.topic in self._leaving:
            return
        topic = sub.topic

        async def leave() -> None:
            try:
                await self._command({"action": "unsubscribe", "topic": topic}, None)
            except ClientError as exc:  # e.g. it was never subscribed, or we are offline
                log.debug("best-effort unsubscribe from %r: %s", topic, exc)
            finally:
                if self._leaving.get(topic) is task:
                    del self._leaving[topic]

        task = asyncio.get_running_loop().create_task(leave())
        self._leaving[topic] = task

    async def _unsubscribe(self, sub: Subscription[Any], timeout: float | None) -> None:  # noqa: ASYNC109
        was_active = sub.active and self._router.subs.get(sub.topic) is sub
        self._forget(sub)
        sub._finish()
        if was_active and self._ws is not None and self._failure is None:
            await self._command({"action": "unsubscribe", "topic": sub.topic}, timeout)

    async def publish(self, topic: str, data: Any, *, timeout: float | None = None  # noqa: ASYNC109
                      ) -> int | None:
        """Publish `data` (JSON-serializable) and wait for the ack; its offset (None on
        topics without history). Waits for a reconnect within `timeout`. A drop before
        the ack raises `ClientClosed` and the publish is not retried (it may have
        happened: at most once). Raises `Forbidden`, `Timeout`, `CommandError`."""
        reply = await self._command({"action": "publish", "topic": topic, "data": data},
                                    timeout)
        offset = reply.get("offset")
        return offset if isinstance(offset, int) else None


def connect(url: str, *, token: Token = None, backoff: Backoff | None = None,
            **options: Any) -> Client:
    """A `Client` for `url` (``ws://host:port/ws/chat``); connect with ``async with``
    (or ``await client.start()``). Options: see `Client`."""
    return Client(url, token=token, backoff=backoff, **options)
