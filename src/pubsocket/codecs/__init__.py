"""Wire protocols, one codec each: plain seed JSON, ``pubsocket.v1`` and Centrifuge."""

from .base import Codec, Parsed
from .centrifuge import CENTRIFUGE, CentrifugeCodec
from .plain import PLAIN, PlainCodec
from .v1 import V1, V1Codec

__all__ = ["CENTRIFUGE", "PLAIN", "V1", "CentrifugeCodec", "Codec", "Parsed", "PlainCodec",
           "V1Codec"]
