"""permessage-deflate without I/O: negotiation answers, the compressed framer, and the
hub compressing a publication once per parameter set (server/deflate.py)."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest

from pubsocket import Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import V1
from pubsocket.errors import HTTPError
from pubsocket.framing import text_frame
from pubsocket.hub.wire import Batch
from pubsocket.server.deflate import (
    MAX_RATIO,
    DeflateFramer,
    InflateBudget,
    deflate_wires,
    negotiate,
)
from pubsocket.server.frames import TEXT_WIRES
from tests.unit.test_hub import Recorder


class BatchRecorder(Recorder):
    """A subscriber of batched (native) wires: keeps the shared batches it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Batch] = []

    def deliver_batch(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.frames = [f for b in self.batches for f in b]

MiB = 1024 * 1024
BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize(("offers", "answer", "bits"), [
    (["permessage-deflate"], BOTH, 15),
    (["permessage-deflate; client_max_window_bits"], BOTH, 15),
    (["permessage-deflate; client_max_window_bits=10"], BOTH + "; client_max_window_bits=10", 15),
    (["permessage-deflate; server_max_window_bits=10"], BOTH + "; server_max_window_bits=10", 10),
    (["permessage-deflate; server_no_context_takeover"], BOTH, 15),
    (["x-webkit-deflate-frame, permessage-deflate"], BOTH, 15),
    # Declined offers (RFC 7692 §7: unknown parameter, bad value, duplicate; a window of
    # 8 bits, which zlib cannot produce): the next offer is taken, else none.
    (["permessage-deflate; foo=1"], None, 0),
    (["permessage-deflate; server_max_window_bits=16"], None, 0),
    (["permessage-deflate; server_max_window_bits=8"], None, 0),
    (["permessage-deflate; client_no_context_takeover; client_no_context_takeover"], None, 0),
    (["permessage-deflate; server_max_window_bits=8", "permessage-deflate"], BOTH, 15),
    (["permessage-deflate; foo, permessage-deflate; server_max_window_bits=12"],
     BOTH + "; server_max_window_bits=12", 12),
    (["x-webkit-deflate-frame"], None, 0),
    ([], None, 0),
])
def test_negotiation_answers(offers: list[str], answer: str | None, bits: int) -> None:
    result = negotiate(offers)
    if answer is None:
        assert result is None
        return
    assert result is not None
    header, extension = result
    assert header == answer
    assert extension.local_no_context_takeover and extension.remote_no_context_takeover
    assert extension.local_max_window_bits == bits


def test_a_malformed_offer_fails_the_handshake() -> None:
    with pytest.raises(HTTPError) as caught:
        negotiate(["permessage-deflate; ;"])
    assert caught.value.status == 400


def inflate(frame: bytes, bits: int = 15) -> tuple[bool, bytes]:
    """(RSV1, payload) of a short unmasked server frame, inflated when RSV1 is set."""
    rsv1 = bool(frame[0] & 0x40)
    n = frame[1] & 0x7F
    start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
    data = frame[start:]
    if rsv1:
        data = zlib.decompressobj(wbits=-bits).decompress(data + b"\x00\x00\xff\xff")
    return rsv1, data


def test_the_framer_compresses_from_the_minimum_size_only() -> None:
    framer = DeflateFramer(15, 256)
    big = json.dumps([{"user": "ann", "text": "hello there " * 3}] * 20).encode()
    frame = framer(big)
    assert inflate(frame) == (True, big)
    assert len(frame) < len(big) / 2
    assert not frame.endswith(b"\x00\x00\xff\xff")
    assert framer(b"x" * 255) == text_frame(b"x" * 255)  # RSV1 clear
    assert framer(big) == frame  # no context carried from one message to the next


def test_a_smaller_window_stays_within_it() -> None:
    payload = bytes(range(256)) * 40
    assert inflate(DeflateFramer(9, 0)(payload), bits=9) == (True, payload)


def test_wire_sets_are_shared_per_parameter_set() -> None:
    assert deflate_wires(15, 256) is deflate_wires(15, 256)
    assert deflate_wires(15, 256) is not deflate_wires(10, 256)
    assert deflate_wires(15, 256)(V1) is deflate_wires(15, 256)(V1)


async def test_a_broadcast_is_compressed_once_per_parameter_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Six deflate subscribers with the default window, three with 10 bits and two
    plain ones: two compressors run, and each set's subscribers share one frame."""
    made: list[int] = []
    real = zlib.compressobj

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("wbits", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(zlib, "compressobj", counting)
    hub = Hub(Settings(), MemoryBroker())
    await hub.start()
    try:
        groups = {15: deflate_wires(15, 256)(V1), 10: deflate_wires(10, 256)(V1),
                  0: TEXT_WIRES(V1)}
        subs: dict[int, list[BatchRecorder]] = {15: [], 10: [], 0: []}
        for bits, count in ((15, 6), (10, 3), (0, 2)):
            for _ in range(count):
                sub = BatchRecorder()
                subs[bits].append(sub)
                await hub.subscribe(sub, "chat", groups[bits])
        page = [{"user": f"u{i}", "text": "a fairly ordinary chat line"} for i in range(40)]
        await hub.publish("chat", page)
        assert sorted(made) == [-15, -10]
        for bits, group in subs.items():
            first = group[0].frames[0]
            assert all(s.frames[0] is first for s in group)  # one frame shared
            assert all(s.batches[0] is group[0].batches[0] for s in group)  # one batch
            rsv1, payload = inflate(first, bits or 15)
            assert rsv1 == (bits != 0)
            assert json.loads(payload)["data"] == page
    finally:
        await hub.close()


async def test_the_inflate_budget_lets_small_reads_pass_a_queue_of_bombs() -> None:
    loop = asyncio.get_running_loop()
    budget = InflateBudget(loop, limit=4 * MiB)
    bomb = budget.bound(8 * 1024, 1 * MiB)
    chat = budget.bound(100, 1 * MiB)
    assert (bomb, chat) == (1 * MiB, 100 * MAX_RATIO)
    admitted = 0
    while budget.admit(bomb):  # bombs take at most the first half of an iteration
        budget.charge(bomb)
        admitted += 1
    assert admitted == 2
    assert budget.admit(chat)  # a chat message still passes in this iteration
    budget.charge(2 * MiB)
    assert not budget.admit(chat)
    await asyncio.sleep(0)  # the next iteration starts afresh
    assert budget.admit(bomb) and budget.admit(chat)
    budget.charge(64 * MiB)  # a read may overshoot (several messages): charged in full
    await asyncio.sleep(0)
    assert budget.admit(bomb)
