"""The connection task of `Client`: read, and on a drop reconnect, resubscribe, recover.

`run(client, ws)` is the one task that owns `client`'s socket (connection.py starts it
and cancels it on close). It reads `ws` into the client's `Router` until the connection
drops, then: fails the commands still waiting for a reply with `ClientClosed` (never
resent: at most once), stops if the client is closing, ends the client if the close code
is final (`close_failure`), otherwise sets ``"reconnecting"``, `redial`s, sends a
subscribe for every confirmed subscription (`resubscribe`, ``since`` its last position)
and only then attaches the new socket, so waiting commands queue behind the resubscribes
on the server. Any `ClientError` (or a bug, logged) ends the client through
`Client._end`; cancellation closes a socket that was dialed but not yet attached.

* `close_failure(code)`: the error that ends the client after the server closed with
  `code`, or None when reconnecting may help (docs/protocol.md, close codes).
* `redial(open_, backoff, ...)`: calls `open_` after `backoff.delay(attempt)` until it
  succeeds; raises `AuthError` after `max_auth_failures` 401s in a row, `ClientClosed`
  after `max_attempts` attempts. Any other failure (the token callable's included) is
  logged and retried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import Backoff
from .dial import read_frames
from .errors import AuthError, ClientClosed, ClientError, ConnectFailed
from .router import Router

if TYPE_CHECKING:
    from .connection import Client

log = logging.getLogger("pubsocket.client")

# Close codes after which reconnecting repeats the failure (docs/protocol.md, close codes).
FINAL_CLOSES = frozenset({1002, 1003, 1007, 1008, 1009})


async def run(client: Client, ws: ClientConnection) -> None:
    """`client`'s connection task, starting on the attached `ws`; see the module docstring."""
    try:
        while True:
            await read_frames(ws, client._router.dispatch)
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
            log.info("connection closed (%d); reconnecting", code)
            client._set_state("reconnecting")
            ws = await redial(client._open, client._backoff,
                              max_attempts=client._max_attempts,
                              max_auth_failures=client._max_auth_failures)
            await resubscribe(ws, client._router, client._ids)
            client._attach(ws)
    except ClientError as exc:
        client._end(exc, exc)
    except Exception:  # a bug (or an on_state callback that raised): end, loudly
        log.exception("the pubsocket client's connection task failed")
        error = ClientClosed("the client's connection task failed (see the log)")
        client._end(error, error)
    except asyncio.CancelledError:
        await ws.close()  # a connection made while reconnecting, not attached yet
        raise


def close_failure(code: int) -> ClientError | None:
    """Why the client ends after a close with `code`; None: reconnect."""
    if code == 4003:
        return AuthError("the server disconnected this user (4003)")
    if code in FINAL_CLOSES:
        return ClientClosed(f"the server closed the connection with {code}")
    return None


async def redial(open_: Callable[[], Awaitable[ClientConnection]], backoff: Backoff, *,
                 max_attempts: int | None, max_auth_failures: int) -> ClientConnection:
    """A new connection from `open_`, retried with `backoff`; see the module docstring."""
    refusals = 0
    for attempt in itertools.count(1):
        if max_attempts is not None and attempt > max_attempts:
            raise ClientClosed(f"gave up reconnecting after {max_attempts} attempts")
        await asyncio.sleep(backoff.delay(attempt))
        try:
            return await open_()
        except InvalidStatus as exc:
            status = exc.response.status_code
            refusals = refusals + 1 if status == 401 else 0
            if refusals >= max_auth_failures:
                raise AuthError(f"the server refused the token (401) {refusals} times "
                                "in a row") from None
            log.warning("reconnect attempt %d refused with HTTP %d", attempt, status)
        except (OSError, TimeoutError, InvalidHandshake, ConnectFailed) as exc:
            refusals = 0
            log.info("reconnect attempt %d failed: %s", attempt, exc)
        except Exception:  # the token callable failed: try again later
            log.warning("reconnect attempt %d: the token callable raised", attempt,
                        exc_info=True)
    raise AssertionError("unreachable")  # pragma: no cover


async def resubscribe(ws: ClientConnection, router: Router, ids: Iterator[int]) -> None:
    """Send a subscribe for every confirmed subscription in `router`, with ``since``
    where it has a position, ids from `ids`; the acks are handled by the reader, in
    order with the replays. Returns early if `ws` closes (the reader starts over)."""
    for sub in list(router.subs.values()):
        if not sub.confirmed:
            continue  # its own subscribe() call fails with ClientClosed and drops it
        body: dict[str, Any] = {"action": "subscribe", "topic": sub.topic}
        recoverable = sub.offset is not None and sub.epoch is not None
        if recoverable:
            body["since"] = {"offset": sub.offset, "epoch": sub.epoch}
        cid = next(ids)
        body["id"] = cid
        router.pending[cid] = (router.resubscribed(sub, recoverable), None)
        try:
            await ws.send(orjson.dumps(body).decode())
        except ConnectionClosed:
            return  # the reader sees the close and starts over
