"""The Centrifuge client protocol v2 (docs/centrifuge.md): its codec and parsing, the
connect gate, the pinger, close and error codes."""

from .codec import CENTRIFUGE, CLOSE_CODES, CentrifugeCodec
from .connect import Endpoint, RpcHook

__all__ = ["CENTRIFUGE", "CLOSE_CODES", "CentrifugeCodec", "Endpoint", "RpcHook"]
