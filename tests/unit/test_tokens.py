"""`Authenticator`: the API key, signed HS256 tokens, and every way a header can be wrong."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from pubsocket import ConfigError, Unauthorized
from pubsocket.auth import Authenticator, expiry_of
from pubsocket.errors import TokenExpired

API_KEY = "unit-api-key-0123456789abcdef0123456789"
SECRET = "unit-secret-0123456789abcdef0123456789abcdef"
OTHER_SECRET = "another-secret-0123456789abcdef0123456789ab"


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator(API_KEY, SECRET)


def bearer(token: str) -> list[str]:
    return [f"Bearer {token}"]


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(auth: Authenticator, headers: list[str]) -> str:
    with pytest.raises(Unauthorized) as info:
        auth.verify(headers)
    assert info.value.status == 401
    assert info.value.code == "unauthorized"
    return info.value.message


def test_api_key_is_accepted(auth: Authenticator) -> None:
    assert auth.verify(bearer(API_KEY)) == {"sub": "api_key"}


def test_api_key_prefix_or_extension_is_refused(auth: Authenticator) -> None:
    assert refused(auth, bearer(API_KEY[:-1])) == "not the API key and not a valid JWT"
    assert refused(auth, bearer(API_KEY + "x")) == "not the API key and not a valid JWT"


def test_api_key_only_authenticator_refuses_jwts() -> None:
    only_key = Authenticator(API_KEY, None)
    assert only_key.verify(bearer(API_KEY)) == {"sub": "api_key"}
    assert refused(only_key, bearer(signed({"sub": "x"}))) == "invalid token"


def test_nothing_verifies_without_key_or_secret() -> None:
    nothing = Authenticator(None, None)
    refused(nothing, bearer(API_KEY))
    refused(nothing, bearer(signed({"sub": "x"})))


def test_signed_token_claims(auth: Authenticator) -> None:
    now = int(time.time())
    token = signed({"sub": "alice", "role": "admin", "iat": now, "exp": now + 60})
    claims = auth.verify(bearer(token))
    assert claims["sub"] == "alice"
    assert claims["role"] == "admin"
    assert claims["exp"] == now + 60


def test_issued_token_verifies(auth: Authenticator) -> None:
    before = int(time.time())
    token = auth.issue(sub="bob", ttl=120, claims={"room": "lobby"})
    claims = auth.verify(bearer(token))
    after = int(time.time())
    assert claims["sub"] == "bob"
    assert claims["room"] == "lobby"
    assert before <= claims["iat"] <= after
    assert before + 120 <= claims["exp"] <= after + 120


def test_expired_token(auth: Authenticator) -> None:
    token = signed({"sub": "a", "exp": int(time.time()) - 10})
    assert refused(auth, bearer(token)) == "token expired"


def test_an_expired_token_is_typed_as_such(auth: Authenticator) -> None:
    # The type, not the message, tells the failed-auth budget not to charge it.
    token = signed({"sub": "a", "exp": int(time.time()) - 10})
    with pytest.raises(TokenExpired):
        auth.verify(bearer(token))
    with pytest.raises(TokenExpired):
        auth.principal_of(token)


@pytest.mark.parametrize(("claims", "secret", "reason"), [
    ({}, OTHER_SECRET, "bad signature"),  # forged: never "expired"
    ({"aud": "elsewhere"}, SECRET, "wrong audience"),  # PyJWT checks exp before aud
    ({"channel": "chat:1"}, SECRET, "invalid token"),  # a subscription token
    ({"exp": "1"}, SECRET, "invalid token"),  # not a NumericDate (PyJWT: expired)
], ids=["forged", "audience", "subscription", "string_exp"])
def test_an_expired_token_wrong_otherwise_is_refused_for_that(
        auth: Authenticator, claims: dict[str, Any], secret: str, reason: str) -> None:
    token = signed({"sub": "a", "exp": int(time.time()) - 10, **claims}, secret)
    with pytest.raises(Unauthorized) as info:
        auth.verify(bearer(token))
    assert not isinstance(info.value, TokenExpired)
    assert info.value.message == reason


def test_nbf_in_the_future_is_refused(auth: Authenticator) -> None:
    token = signed({"sub": "a", "nbf": int(time.time()) + 600})
    assert refused(auth, bearer(token)) == "token not yet valid"


def test_iat_in_the_future_is_refused(auth: Authenticator) -> None:
    # PyJWT raises ImmatureSignatureError for iat > now (+ leeway); it says so
    token = signed({"sub": "a", "iat": int(time.time()) + 600})
    assert refused(auth, bearer(token)) == "token not yet valid"


def test_wrong_secret(auth: Authenticator) -> None:
    assert refused(auth, bearer(signed({"sub": "a"}, OTHER_SECRET))) == "bad signature"


def test_alg_none_token_is_refused(auth: Authenticator) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": "admin"}).encode())
    assert refused(auth, bearer(f"{header}.{payload}.")) == "algorithm not allowed"


def test_hs512_token_with_the_right_secret_is_refused() -> None:
    # the algorithm is pinned to HS256, not taken from the token's header
    secret = SECRET * 2  # long enough for HS512 without a key-length warning
    token = signed({"sub": "a"}, secret, "HS512")
    assert jwt.decode(token, secret, algorithms=["HS512"])["sub"] == "a"
    assert refused(Authenticator(None, secret), bearer(token)) == "algorithm not allowed"


def test_tampered_payload_is_refused(auth: Authenticator) -> None:
    header, _, sig = signed({"sub": "alice"}).split(".")
    payload = b64(json.dumps({"sub": "admin"}).encode())
    assert refused(auth, bearer(f"{header}.{payload}.{sig}")) == "bad signature"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "a.b", "....", "ey.ey.ey", "é"])
def test_malformed_tokens(auth: Authenticator, token: str) -> None:
    assert refused(auth, bearer(token)) == "not the API key and not a valid JWT"


def test_no_header(auth: Authenticator) -> None:
    assert refused(auth, []) == "a valid Bearer token is required"


def test_two_headers_are_refused_even_if_both_valid(auth: Authenticator) -> None:
    msg = refused(auth, [f"Bearer {API_KEY}", f"Bearer {API_KEY}"])
    assert msg == "exactly one Authorization header is allowed"


@pytest.mark.parametrize(
    "header",
    [f"Basic {API_KEY}", f"Token {API_KEY}", API_KEY, "Bearer", "Bearer   ", "",
     f"Bearer{API_KEY}"],
)
def test_wrong_scheme_or_missing_token(auth: Authenticator, header: str) -> None:
    assert refused(auth, [header]) == "Authorization must be 'Bearer <token>'"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(auth: Authenticator, scheme: str) -> None:
    assert auth.verify([f"{scheme} {API_KEY}"]) == {"sub": "api_key"}


def test_surrounding_whitespace_is_tolerated(auth: Authenticator) -> None:
    assert auth.verify([f"  Bearer   {API_KEY}  "]) == {"sub": "api_key"}


def test_issue_without_secret_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="SECRET"):
        Authenticator(API_KEY, None).issue(sub="x")


def test_issue_without_ttl_has_no_exp(auth: Authenticator) -> None:
    token = auth.issue(sub="forever", ttl=None)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert "exp" not in claims
    assert claims["sub"] == "forever"
    assert expiry_of(auth.verify(bearer(token))) is None


def test_issue_is_hs256_and_sub_overrides_claims(auth: Authenticator) -> None:
    token = auth.issue(sub="real", claims={"sub": "claimed", "iat": 1})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "real"
    assert claims["iat"] == 1  # caller's iat is kept


def test_issue_does_not_change_callers_claims(auth: Authenticator) -> None:
    extra = {"room": "a"}
    auth.issue(sub="x", claims=extra)
    assert extra == {"room": "a"}


def test_expiry_of() -> None:
    assert expiry_of({"exp": 1700000000}) == 1700000000.0
    assert isinstance(expiry_of({"exp": 1700000000}), float)
    assert expiry_of({"exp": 1.5}) == 1.5
    assert expiry_of({}) is None
    assert expiry_of({"exp": "1700000000"}) is None
    assert expiry_of({"sub": "api_key"}) is None


def test_expiry_of_issued_token(auth: Authenticator) -> None:
    before = time.time()
    exp = expiry_of(auth.verify(bearer(auth.issue(ttl=30))))
    assert exp is not None
    assert before + 29 <= exp <= time.time() + 30


def test_refusals_never_echo_the_token(auth: Authenticator) -> None:
    token = "secret-looking-token-value"
    for headers in (bearer(token), [f"Basic {token}"], [f"Bearer {token}", "x"]):
        with pytest.raises(Unauthorized) as info:
            auth.verify(headers)
        assert token not in str(info.value)
        assert token not in info.value.message


def test_subscription_tokens_grant_only_subscriptions(auth: Authenticator) -> None:
    # A JWT with a channel claim (a Centrifuge subscription token) carries no topics
    # claim: accepted as a connection token it would allow everything.
    sub_token = signed({"sub": "alice", "channel": "chat:1", "exp": time.time() + 60})
    for use in (lambda: auth.authenticate(bearer(sub_token)),
                lambda: auth.authenticate([], ["pubsocket.v1", "bearer", sub_token]),
                lambda: auth.principal_of(sub_token), lambda: auth.verify(bearer(sub_token))):
        with pytest.raises(Unauthorized, match="invalid token"):
            use()
    assert auth.subscription_claims(sub_token)["channel"] == "chat:1"
    connection_token = signed({"sub": "alice", "exp": time.time() + 60})
    for token in (connection_token, API_KEY):
        with pytest.raises(Unauthorized, match="invalid token"):
            auth.subscription_claims(token)
    expired = signed({"sub": "alice", "channel": "chat:1", "exp": time.time() - 60})
    with pytest.raises(Unauthorized, match="token expired"):
        auth.subscription_claims(expired)
