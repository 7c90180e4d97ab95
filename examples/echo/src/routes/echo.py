"""Echo at /ws/echo, for the Autobahn conformance run (`make conformance`).

It raises the message limit to 16 MiB and lifts the fragment cap, so the 9.* cases
(large and heavily fragmented messages) apply; the defaults stay 1 MiB and 4096.
"""

from pubsocket import Websocket, get

MiB = 1024 * 1024


@get("/ws/echo")
async def echo(request, response):
    ws = await Websocket(request).connection(max_message_size=16 * MiB, max_fragments=0)
    async for message in ws:
        await ws.send(message)
