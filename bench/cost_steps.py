"""CPU per step of one publication and one delivery, each step run alone in a loop.

    python bench/cost_steps.py [--n 20000]

The steps of the hot path (docs/design.md "Cost model: one delivery") on the real
objects, in-process and without sockets: websockets' frame parse (and the fast path
that takes its place for a whole single-frame message; both also for a message
compressed with permessage-deflate, inflated by websockets' extension), the command parse,
the publish (authorize + the memory broker's position and history append + the hub's
in-order check), the encode and the frame, the session's whole publish path after the
frame parse (plain and pubsocket.v1), then the fan-out's per-subscriber work on a
batched wire. CPU time (`time.process_time`) per call, best of 5 runs, so other load on
the machine inflates it little; the socket work (the read, the write syscalls and the
loop) is what bench/cost_model.py measures on top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import zlib
from collections.abc import Callable

import orjson
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from pubsocket import Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import PLAIN, V1
from pubsocket.framing import text_frame
from pubsocket.hub.session import Session
from pubsocket.hub.wire import Batch
from pubsocket.server.fastframes import DEFLATED, fast_limit, inflate, split_frames
from pubsocket.server.frames import TEXT_WIRES, FrameProtocol, park


class Queue:
    """A subscriber of a batched wire doing what `Outbound.deliver_batch` does."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[bytes | Batch] = []

    def deliver(self, frame: bytes) -> None:
        self.out.append(frame)

    def deliver_batch(self, batch: Batch) -> None:
        out = self.out
        if out and out[-1].__class__ is Batch:
            out[-1].open = False  # type: ignore[union-attr]
        out.append(batch)

    def close_nowait(self, code: int, reason: str = "") -> None:
        pass

    # What a session needs besides (its peer): never paused here.
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_max_message_size(self, size: int) -> None:
        pass

    backlog = 0


def per_call(fn: Callable[[], object], n: int) -> float:
    """µs of CPU per call, best of 5 runs of `n` calls."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t0)
    return 1e6 * best / n


async def main(n: int) -> dict[str, float]:
    data = {"t": time.perf_counter_ns(), "s": 123456, "p": "x" * 40}
    message = orjson.dumps({"action": "publish", "topic": "room", "data": data})
    wire_frame = Frame(Opcode.TEXT, message).serialize(mask=True)
    proto = Protocol(Side.SERVER, state=OPEN, max_size=1 << 20)

    def parse_frame() -> object:
        proto.receive_data(wire_frame)
        return proto.events_received()

    parked = park(FrameProtocol(Side.SERVER, max_size=1 << 20))
    assert parked is not None
    burst = wire_frame * 16

    def split_frame() -> object:  # what WSConnection._feed does first (server/inbound.py)
        return split_frames(wire_frame, fast_limit(None, parked), 64, 16384)

    def split_burst() -> object:
        return split_frames(burst, fast_limit(None, parked), 64, 16384)

    # The same message compressed as a client does under client_no_context_takeover
    # (which the server negotiates): a fresh compressor, RSV1 set.
    c = zlib.compressobj(wbits=-15)
    zipped = Frame(Opcode.TEXT, (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4])
    zip_frame = bytes((zipped.serialize(mask=True)[0] | 0x40,)) + zipped.serialize(
        mask=True)[1:]
    zip_proto = Protocol(Side.SERVER, state=OPEN, max_size=1 << 20)
    zip_proto.extensions = [PerMessageDeflate(True, True, 15, 15)]
    zip_server = FrameProtocol(Side.SERVER, max_size=1 << 20)
    zip_server.extensions = [PerMessageDeflate(True, True, 15, 15)]
    zip_parked = park(zip_server)
    assert zip_parked is not None

    def parse_zipped() -> object:
        zip_proto.receive_data(zip_frame)
        return zip_proto.events_received()

    def split_zipped() -> object:  # split, then inflate (server/inbound.py `_split`)
        limit = fast_limit(None, zip_parked)
        _, frames = split_frames(zip_frame, limit, 64, 16384, True)
        return [inflate(zip_parked.extensions, payload, opcode, limit)
                if opcode & DEFLATED else payload for payload, opcode in frames]

    zip_proto.receive_data(zip_frame)
    (parsed,) = zip_proto.events_received()
    assert isinstance(parsed, Frame)
    assert parsed.data == message
    assert split_zipped() == [message]

    text = message.decode()
    hub = Hub(Settings(), MemoryBroker())
    await hub.start()
    out: dict[str, float] = {}
    try:
        out["frame parse (websockets)"] = per_call(parse_frame, n)
        out["frame split (fast path, one frame per read)"] = per_call(split_frame, n)
        out["frame split (fast path, 16 frames per read), per frame"] = per_call(
            split_burst, max(1, n // 16)) / 16
        out["frame parse, deflated (websockets + its permessage-deflate)"] = per_call(
            parse_zipped, n)
        out["frame split + inflate, deflated (fast path, one frame per read)"] = per_call(
            split_zipped, n)
        out["utf-8 decode"] = per_call(message.decode, n)
        out["command count + parse (orjson)"] = per_call(
            lambda: (PLAIN.count(text), PLAIN.parse(text)), n)
        payload = orjson.dumps(data)
        out["publish, no subscriber (broker position + history, hub check)"] = per_call(
            lambda: hub.publish_payload_nowait("empty", payload), n)
        pub = hub.publish_payload_nowait("empty", payload)
        out["encode (plain codec)"] = per_call(lambda: PLAIN.publication("room", pub), n)
        out["frame (text_frame)"] = per_call(lambda: text_frame(payload), n)
        wire = TEXT_WIRES(PLAIN)
        # The socket publish path after the frame parse, whole: Session.on_message (count,
        # charge, parse, authorize, publish, deliver to one subscriber's open batch).
        quiet = Settings(rate_limit=0, publish_byte_rate=0)
        for codec in (PLAIN, V1):
            sub, pub = Queue(), Queue()
            Session(hub, sub, quiet, codec=codec, wires=TEXT_WIRES).on_message(
                '{"action":"subscribe","topic":"session-' + codec.name + '"}')
            publisher = Session(hub, pub, quiet, codec=codec, wires=TEXT_WIRES)
            line = text.replace('"room"', '"session-' + codec.name + '"')
            out[f"session publish ({codec.name}), one subscriber"] = per_call(
                lambda p=publisher, line=line: p.on_message(line), n)
            assert sub.out, "the session's publish was not delivered"
            assert not pub.out, "the session's publish was answered (refused?)"
            sub.out.clear()
        for subs in (1, 1000):
            queues = [Queue() for _ in range(subs)]
            for q in queues:
                await hub.subscribe(q, f"fan{subs}", wire)
            topic = f"fan{subs}"

            def first_of_tick(queues: list[Queue] = queues, topic: str = topic) -> None:
                for q in queues:
                    q.out.clear()
                    q.out.append(b"x")  # closes the open batch: the next one is new
                hub.publish_payload_nowait(topic, payload)

            def later_in_tick(topic: str = topic) -> None:
                hub.publish_payload_nowait(topic, payload)

            reps = max(20, n // subs)
            first = per_call(first_of_tick, reps)
            later = per_call(later_in_tick, n)
            out[f"publish to {subs}, first of a tick, per delivery"] = first / subs
            out[f"publish to {subs}, later in the tick (batch append), per publication"] = later
            for q in queues:
                q.out.clear()
    finally:
        await hub.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    res = asyncio.run(main(ap.parse_args().n))
    width = max(map(len, res))
    for k, v in res.items():
        print(f"{k:<{width}}  {v:8.3f} µs")
    print(json.dumps(res))
