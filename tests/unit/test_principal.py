"""`Principal` and `Authenticator.authenticate`: identities, and where a token may come from."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from pubsocket import Unauthorized
from pubsocket.auth import (
    Authenticator,
    Principal,
    offered_subprotocols,
    split_bearer,
    strip_bearer,
)
from pubsocket.web.request import Headers, Request
from tests.conftest import API_KEY, SECRET


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(API_KEY, SECRET)


def test_principal_from_a_token(auth: Authenticator) -> None:
    token = auth.issue("alice", claims={"info": {"name": "A"}, "role": "admin"})
    p = auth.authenticate([f"Bearer {token}"])
    assert (p.sub, p.authenticated, p.is_api_key, p.info) == ("alice", True, False, {"name": "A"})
    assert p.claims["role"] == "admin" and p.rules is None
    with pytest.raises(TypeError):
        p.claims["role"] = "root"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.sub = "bob"


def test_client_ids_are_random_per_principal(auth: Authenticator) -> None:
    token = auth.issue("alice")
    ids = {auth.authenticate([f"Bearer {token}"]).client_id for _ in range(50)}
    ids |= {Principal.anonymous().client_id for _ in range(50)}
    assert len(ids) == 100 and all(len(i) == 22 for i in ids)


def test_principals_compare_by_identity(auth: Authenticator) -> None:
    token = auth.issue("alice")
    a, b = (auth.authenticate([f"Bearer {token}"]) for _ in range(2))
    assert a != b and a == a and len({a, b}) == 2  # hashable: usable as dict keys


def test_api_key_is_one_fixed_principal(auth: Authenticator) -> None:
    p = auth.authenticate([f"Bearer {API_KEY}"])
    assert (p.sub, p.is_api_key, p.authenticated, dict(p.claims)) == (
        "api_key", True, True, {"sub": "api_key"})
    assert auth.verify([f"Bearer {API_KEY}"]) == {"sub": "api_key"}  # unchanged


def test_a_jwt_named_api_key_is_not_the_api_key(auth: Authenticator) -> None:
    p = auth.authenticate([f"Bearer {auth.issue('api_key')}"])
    assert p.sub == "api_key" and not p.is_api_key


def test_token_without_sub(auth: Authenticator) -> None:
    p = auth.authenticate([f"Bearer {auth.issue(None)}"])
    assert p.sub is None and p.authenticated and p.user is None


def test_anonymous() -> None:
    p = Principal.anonymous()
    assert (p.sub, p.authenticated, p.is_api_key, p.info, p.rules) == (
        None, False, False, None, None)
    assert dict(p.claims) == {}


def test_offer_parsing_and_splitting() -> None:
    assert offered_subprotocols(["pubsocket.v1, bearer", "abc.def"]) == [
        "pubsocket.v1", "bearer", "abc.def"]
    assert offered_subprotocols(["bad header,,, ;"]) == []
    assert split_bearer(["pubsocket.v1", "bearer", "t"]) == (["pubsocket.v1"], ["t"])
    assert split_bearer(["bearer", "t", "x"]) == (["x"], ["t"])
    assert split_bearer(["x", "bearer"]) == (["x"], [""])
    assert split_bearer(["bearer", "bearer"]) == ([], ["bearer"])
    assert strip_bearer(["a", "bearer", "t", "b"]) == ["a", "b"]
    assert strip_bearer(["a"]) == ["a"]


def test_authenticate_from_the_offer(auth: Authenticator) -> None:
    token = auth.issue("alice")
    assert auth.authenticate([], ["pubsocket.v1", "bearer", token]).sub == "alice"
    assert auth.authenticate([], ["bearer", API_KEY]).is_api_key
    for offer in (["bearer"], ["pubsocket.v1"], [], ["bearer", token, "bearer", token],
                  ["bearer", "not-a-token"], ["Bearer", token]):
        with pytest.raises(Unauthorized) as info:
            auth.authenticate([], offer)
        assert token not in info.value.message


def test_header_wins_over_the_offer(auth: Authenticator) -> None:
    alice, bob = auth.issue("alice"), auth.issue("bob")
    assert auth.authenticate([f"Bearer {bob}"], ["bearer", alice]).sub == "bob"
    with pytest.raises(Unauthorized):
        auth.authenticate(["Bearer wrong"], ["bearer", alice])


def test_request_principal_defaults_to_anonymous_and_is_stable() -> None:
    request = Request("GET", "/x", Headers())
    p = request.principal
    assert p.sub is None and request.principal is p
    other = Principal.anonymous()
    request.principal = other
    assert request.principal is other


def test_anonymous_is_small_and_its_id_is_drawn_once_on_first_read(auth: Authenticator) -> None:
    p = Principal.anonymous()
    token = auth.authenticate([f"Bearer {auth.issue('alice')}"])
    assert isinstance(token, Principal) and type(p) is Principal
    assert sys.getsizeof(p) < sys.getsizeof(token)  # one slot: the id
    assert p._client_id is None  # not drawn until read
    first = p.client_id
    assert p.client_id == first and len(first) == 22
    refreshed = token.with_client_id(first)  # a refresh keeps the connection's id
    assert (refreshed.client_id, refreshed.sub, refreshed.claims) == (
        first, "alice", token.claims)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.sub = "bob"
