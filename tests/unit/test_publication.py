"""`Publication` is a value, as the frozen dataclass it replaced was: frozen, compared and
hashed by its fields, copied and pickled whole (brokers/base.py)."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest

from pubsocket.brokers.base import Publication, Publisher

WHO = Publisher("c1", "alice", b'{"n":1}')


def test_fields_by_position_or_keyword() -> None:
    pub = Publication(3, "e", b"x", WHO)
    assert (pub.offset, pub.epoch, pub.payload, pub.publisher) == (3, "e", b"x", WHO)
    assert Publication(offset=3, epoch="e", payload=b"x", publisher=WHO) == pub
    assert Publication(0, "", b"1").publisher is None
    with pytest.raises(TypeError, match=r"Publication\.__init__"):
        Publication(0, "")  # type: ignore[call-arg]


def test_frozen() -> None:
    pub = Publication(1, "e", b"x")
    with pytest.raises(FrozenInstanceError):
        pub.offset = 2
    with pytest.raises(FrozenInstanceError):
        del pub.payload
    with pytest.raises(FrozenInstanceError):
        pub.other = 1
    assert pub.offset == 1 and not hasattr(pub, "__dict__")


def test_equal_and_hashed_by_fields() -> None:
    a, b = Publication(1, "e", b"x", WHO), Publication(1, "e", b"x", WHO)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Publication(1, "e", b"x") and a != Publication(2, "e", b"x", WHO)
    assert a != (1, "e", b"x", WHO)  # only a Publication equals a Publication


def test_repr_names_every_field() -> None:
    assert repr(Publication(0, "", b"1")) == (
        "Publication(offset=0, epoch='', payload=b'1', publisher=None)")


def test_copies_and_pickles() -> None:
    pub = Publication(5, "e", b"x", WHO)
    for twin in (copy.copy(pub), copy.deepcopy(pub), pickle.loads(pickle.dumps(pub))):
        assert twin == pub and type(twin) is Publication


def test_match_by_position() -> None:
    match Publication(5, "e", b"x"):
        case Publication(offset, epoch, payload, None):
            assert (offset, epoch, payload) == (5, "e", b"x")
        case _:
            pytest.fail("no match")
