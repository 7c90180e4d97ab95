"""The hub's command relay in real servers, before the HTTP-stream routes use it (tests).

``/ws/relay``: a WebSocket registered with the relay under a random session id; it
first sends ``{"session", "node"}``, then every command routed to it, in order.
``POST /relay`` (API key) routes ``{"node", "session", "data"}`` from whichever node it
lands on, and answers the `RouteResult` with the status the emulation routes use.
"""

import asyncio
import json
import secrets

from pubsocket import Websocket, get, post
from pubsocket.hub.relay import RouteResult

STATUS = {RouteResult.LOCAL_FED: 200, RouteResult.SENT: 200,
          RouteResult.UNKNOWN_SESSION: 404, RouteResult.TOO_LARGE: 413,
          RouteResult.UNAVAILABLE: 503}


@get("/ws/relay")
async def relay_socket(request, response):
    relay = request.app.hub.relay
    ws = await Websocket(request).connection()
    session = secrets.token_hex(8)
    inbox = asyncio.Queue()  # feed must not await: the socket sends in feed order
    relay.register(session, inbox.put_nowait)
    sender = asyncio.get_running_loop().create_task(_send_all(ws, inbox))
    try:
        await ws.send(json.dumps({"session": session, "node": relay.node}))
        async for _ in ws:
            pass
    finally:
        relay.unregister(session)
        sender.cancel()


async def _send_all(ws, inbox):
    while True:
        await ws.send((await inbox.get()).decode())


@post("/relay")
async def route(request, response):
    body = request.body
    result = await request.app.hub.relay.route(body["node"], body["session"],
                                               body["data"].encode())
    return response({"result": result.value}, STATUS[result])
