"""Authentication at the edge (tokens) and authorization hooks (topic permissions)."""

from .tokens import Authenticator, expiry_of

__all__ = ["Authenticator", "expiry_of"]
