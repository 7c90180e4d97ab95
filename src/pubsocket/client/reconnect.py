"""The connection task of `Client`: read, and on a drop reconnect, resubscribe, recover.

`run(client, ws)` is the one task that owns `client`'s socket (connection.py starts it
and cancels it on close). It reads `ws` into the client's `Router` until the connection
drops, then: fails the commands still waiting for a reply with `ClientClosed` (never
resent: at most once), stops if the client is closing, ends the client if the close code
is final (`close_failure`), otherwise sets ``"reconnecting"``, `redial`s, sends a
subscribe for every confirmed subscription (`resubscribe`, ``since`` its last position,
in chunks within the server's rate limit) and only then attaches the new socket, so
waiting commands queue behind the resubscribes on the server. The attempt count goes
on across connections until one proves healthy (`HEALTHY_AFTER`). Any `ClientError`
(or a bug, logged) ends the client through `Client._end`; cancellation closes a socket
that was dialed but not yet attached.

* `close_failure(code)`: the error that ends the client after the server closed with
  `code`, or None when reconnecting may help (docs/protocol.md, close codes).
* `redial(open_, backoff, ...)`: calls `open_` after `backoff.delay(attempt)` until it
  succeeds; raises `AuthError` after `max_auth_failures` 401s in a row, `ClientClosed`
  after `max_attempts` attempts. Any other failure (the token callable's included) is
  logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import Backoff
from .dial import read_frames, refusal_reason
from .errors import AuthError, ClientClosed, ClientError, ConnectFailed
from .router import Handler, Router
from .subscription import Subscription

if TYPE_CHECKING:
    from .connection import Client

log = logging.getLogger("pubsocket.client")

# Close codes after which reconnecting repeats the failure (docs/protocol.md, close codes).
FINAL_CLOSES = frozenset({1002, 1003, 1007, 1008, 1009})
# A connection resets the backoff (attempts count from 1 again) only once it proved
# healthy: every resubscribe answered and up this long. A server that accepts and then
# drops at once (rate limit, overload, a bad proxy) gets an escalating backoff and
# `max_attempts` still applies, instead of a reconnect storm at the first delay.
HEALTHY_AFTER = 1.0
# Resubscribes spend one rate-limit token each (default 100/s, burst 200): at most 100
# at a time, a second apart, leaves room for the caller's commands.
RESUBSCRIBE_CHUNK = 100
RESUBSCRIBE_PAUSE = 1.0
# A link is dead after the server's heartbeat interval plus this much (at most) of
# silence: with the default 25 s, 30 s (docs/clients.md).
HEARTBEAT_MARGIN = 5.0


async def run(client: Client, ws: ClientConnection) -> None:
    """`client`'s connection task, starting on the attached `ws`; see the module docstring."""
    loop = asyncio.get_running_loop()
    reader = loop.create_task(read_frames(ws, client._router.dispatch, client._silent))
    await ask_heartbeat(client, ws)
    attempts = 0  # reconnect attempts since the last healthy connection
    healthy_at: float | None = loop.time() + HEALTHY_AFTER  # the first one needs no acks
    try:
        while True:
            await reader
            code = ws.close_code if ws.close_code is not None else 1006
            client._ws = None
            client._ready.clear()
            client._router.drop_pending(ClientClosed(
                f"the connection dropped ({code}) before the reply; the command may "
                "or may not have taken effect"))
            if client._closing:
                return
            failure = close_failure(code)
            if failure is not None:
                raise failure
            if healthy_at is not None and loop.time() >= healthy_at:
                attempts = 0  # it was healthy: a new drop starts a new backoff
            log.info("connection closed (%d); reconnecting", code)
            client._set_state("reconnecting")
            ws, attempts = await redial(client._open, client._backoff, after=attempts,
                                        max_attempts=client._max_attempts,
                                        max_auth_failures=client._max_auth_failures)
            reader = loop.create_task(read_frames(ws, client._router.dispatch,
                                                  client._silent))
            await ask_heartbeat(client, ws)
            acked = await resubscribe(ws, client._router, client._ids, reader,
                                      timeout=client.timeout)
            healthy_at = loop.time() + HEALTHY_AFTER if acked else None
            client._attach(ws)
    except ClientError as exc:
        client._end(exc, exc)
    except Exception:  # a bug (or an on_state callback that raised): end, loudly
        log.exception("the pubsocket client's connection task failed")
        error = ClientClosed("the client's connection task failed (see the log)")
        client._end(error, error)
    except asyncio.CancelledError:
        reader.cancel()
        await ws.close()  # a connection made while reconnecting, not attached yet
        raise


async def ask_heartbeat(client: Client, ws: ClientConnection) -> None:
    """Ask for the server's pings on `ws` (unless ``heartbeat=0``) and watch the link:
    the answer must come within `client.timeout`; then nothing may be silent for longer
    than the server's interval + min(interval, 5) s (or the `heartbeat` option). An
    older server's `bad_action`, or interval 0, turns the watch off."""
    wanted = client._heartbeat
    if wanted is not None and wanted <= 0:
        client._silence = None
        return
    client._silence = client.timeout

    def answered(frame: dict[str, Any]) -> None:
        interval = frame.get("interval") if frame.get("type") == "ack" else None
        if not isinstance(interval, int | float) or isinstance(interval, bool) \
                or interval <= 0:
            client._silence = None
        else:
            client._silence = wanted or interval + min(interval, HEARTBEAT_MARGIN)

    cid = next(client._ids)
    client._router.pending[cid] = (answered, None)
    with contextlib.suppress(ConnectionClosed):  # the reader sees the close
        await ws.send(orjson.dumps({"action": "heartbeat", "id": cid}).decode())


def close_failure(code: int) -> ClientError | None:
    """Why the client ends after a close with `code`; None: reconnect."""
    if code == 4003:
        return AuthError("the server disconnected this user (4003)")
    if code in FINAL_CLOSES:
        return ClientClosed(f"the server closed the connection with {code}")
    return None


async def redial(open_: Callable[[], Awaitable[ClientConnection]], backoff: Backoff, *,
                 after: int = 0, max_attempts: int | None, max_auth_failures: int
                 ) -> tuple[ClientConnection, int]:
    """A new connection from `open_`, retried with `backoff`, and the number of the
    attempt that made it; attempts count on from `after` (the attempts since the last
    healthy connection); see the module docstring."""
    refusals = 0
    for attempt in itertools.count(after + 1):
        if max_attempts is not None and attempt > max_attempts:
            raise ClientClosed(f"gave up reconnecting after {max_attempts} attempts")
        await asyncio.sleep(backoff.delay(attempt))
        try:
            return await open_(), attempt
        except InvalidStatus as exc:
            status = exc.response.status_code
            refusals = refusals + 1 if status == 401 else 0
            if refusals >= max_auth_failures:
                why = refusal_reason(exc.response)
                raise AuthError(f"the server refused the token (401) {refusals} times "
                                f"in a row{': ' + why if why else ''}") from None
            log.warning("reconnect attempt %d refused with HTTP %d", attempt, status)
        except (OSError, TimeoutError, InvalidHandshake, ConnectFailed) as exc:
            refusals = 0
            log.info("reconnect attempt %d failed: %s", attempt, exc)
        except Exception:  # the token callable failed: try again later
            log.warning("reconnect attempt %d: the token callable raised", attempt,
                        exc_info=True)
    raise AssertionError("unreachable")  # pragma: no cover


async def resubscribe(ws: ClientConnection, router: Router, ids: Iterator[int],
                      reader: asyncio.Task[None], *, timeout: float) -> bool:  # noqa: ASYNC109
    """Send a subscribe for every confirmed subscription in `router`, with ``since``
    where it has a position, ids from `ids`, in chunks of `RESUBSCRIBE_CHUNK`: each
    chunk after the previous one's acks and at least `RESUBSCRIBE_PAUSE` s after it
    was sent, within the server's default rate limit. `reader` (reading `ws`) handles
    the acks, in order with the replays. True when every subscribe was answered;
    False when `ws` closed first, or `timeout` s passed waiting for one chunk."""
    loop = asyncio.get_running_loop()
    subs = [sub for sub in router.subs.values() if sub.confirmed]
    # (an unconfirmed one: its own subscribe() call fails with ClientClosed and drops it)
    sent = loop.time()
    for first in range(0, len(subs), RESUBSCRIBE_CHUNK):
        if first:
            await asyncio.sleep(max(0.0, sent + RESUBSCRIBE_PAUSE - loop.time()))
            sent = loop.time()
        chunk = subs[first:first + RESUBSCRIBE_CHUNK]
        if not await _resubscribe_chunk(ws, router, ids, chunk, reader, timeout):
            return False
    return True


async def _resubscribe_chunk(ws: ClientConnection, router: Router, ids: Iterator[int],
                             chunk: list[Subscription[Any]], reader: asyncio.Task[None],
                             timeout: float) -> bool:  # noqa: ASYNC109
    """Send `chunk`'s subscribes; True once all are answered (before `reader` ends)."""
    answered = asyncio.Event()
    waiting = [len(chunk)]

    def counted(handler: Handler) -> Handler:
        def handle(frame: dict[str, Any]) -> None:
            handler(frame)
            waiting[0] -= 1
            if waiting[0] == 0:
                answered.set()
        return handle

    for sub in chunk:
        body: dict[str, Any] = {"action": "subscribe", "topic": sub.topic}
        recoverable = sub.offset is not None and sub.epoch is not None
        if recoverable:
            body["since"] = {"offset": sub.offset, "epoch": sub.epoch}
        cid = next(ids)
        body["id"] = cid
        router.pending[cid] = (counted(router.resubscribed(sub, recoverable)), None)
        try:
            await ws.send(orjson.dumps(body).decode())
        except ConnectionClosed:
            return False  # the reader sees the close and starts over
    acks = asyncio.get_running_loop().create_task(answered.wait())
    try:
        await asyncio.wait({acks, reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        acks.cancel()
    return answered.is_set()
