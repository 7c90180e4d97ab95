"""Finding 8: the time claims ``exp``, ``nbf`` and ``iat`` must be numbers.

PyJWT checks them with ``int(value)``, so a token with ``"exp": "9999999999"`` passed
its check while the server's expiry clock saw no number: a token that never expired.
Every way a token is read refuses such a token: HTTP (401), the WebSocket upgrade
(401), a v1 ``refresh`` (error ``invalid_token``), a Centrifuge connect (close 3500).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pubsocket import App, Unauthorized, pubsub
from pubsocket.auth import Authenticator
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)
LATER = int(time.time()) + 3600

# Each is a token the old code accepted (or, for "exp": true, called merely expired).
BAD_TIMES: list[dict[str, Any]] = [
    {"exp": str(LATER)},            # a numeric string: never expired
    {"exp": str(LATER), "iat": 0},
    {"nbf": "0"},
    {"iat": "0"},
    {"exp": LATER, "iat": True},    # a bool is an int to Python
    {"nbf": False},
]


def forged(claims: dict[str, Any]) -> str:
    """A correctly signed token with `claims` exactly as given."""
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("times", BAD_TIMES)
def test_time_claims_that_are_not_numbers_are_invalid(times: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized) as info:
        AUTH.verify([f"Bearer {forged(times)}"])
    assert info.value.message == "invalid token"
    with pytest.raises(Unauthorized):
        AUTH.principal_of(forged(times))
    # The same claims as numbers verify (a float is a NumericDate too).
    numeric = {k: 1.5 if k != "exp" else LATER + 0.5 for k in times}
    assert AUTH.verify([f"Bearer {forged(numeric)}"])["sub"] == "alice"


def secured_app() -> App:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)
    pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    return app


async def test_every_entry_point_refuses_a_string_exp(serve: Any) -> None:
    srv = await serve(secured_app())
    bad, good = forged({"exp": str(LATER)}), AUTH.issue("alice", 3600)
    auth = {"Authorization": f"Bearer {bad}"}

    status, _, _ = await ahttp("GET", f"{srv.http}/api/history?topic=t", headers=auth)
    assert status == 401
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{srv.ws}/ws/chat", additional_headers=auth)
    assert refused.value.response.status_code == 401

    # In band: a v1 refresh with it is refused, the connection goes on.
    async with connect(f"{srv.ws}/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                       additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        await ws.send(json.dumps({"action": "refresh", "token": bad, "id": 1}))
        async with asyncio.timeout(5):
            reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and reply["code"] == "invalid_token"

    # Centrifuge: a connect with it closes 3500 invalid token.
    async with connect(f"{srv.ws}/connection/websocket") as cf:
        await cf.send(json.dumps({"id": 1, "connect": {"token": bad}}))
        async with asyncio.timeout(5):
            with pytest.raises(ConnectionClosed):
                while True:
                    await cf.recv()
        assert cf.close_code == 3500
