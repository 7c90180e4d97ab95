"""Authentication at the edge (tokens), identity (principals) and topic permissions."""

from .permissions import FORBIDDEN, Action, AuthorizeHook, Authorizer, TopicRules, compile_topics
from .principal import API_KEY_SUB, Principal
from .tokens import (
    BEARER_SUBPROTOCOL,
    Authenticator,
    expiry_of,
    offered_subprotocols,
    split_bearer,
    strip_bearer,
)

__all__ = [
    "API_KEY_SUB",
    "BEARER_SUBPROTOCOL",
    "FORBIDDEN",
    "Action",
    "Authenticator",
    "AuthorizeHook",
    "Authorizer",
    "Principal",
    "TopicRules",
    "compile_topics",
    "expiry_of",
    "offered_subprotocols",
    "split_bearer",
    "strip_bearer",
]
