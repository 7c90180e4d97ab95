"""Wire protocols, one codec each: plain seed JSON and ``pubsocket.v1`` (Centrifuge's codec
lives with the rest of that protocol in `pubsocket.protocols.centrifuge`)."""

from .base import Codec, Parsed
from .plain import PLAIN, PlainCodec
from .v1 import V1, V1Codec

__all__ = ["PLAIN", "V1", "Codec", "Parsed", "PlainCodec", "V1Codec"]
