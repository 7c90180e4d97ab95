"""The Centrifuge client protocol v2 (docs/centrifuge.md): its codec and parsing, the
connect gate, the pinger, close and error codes. `Endpoint` is the `hub.hook.Dialect`
the pub/sub endpoint plugs into its sessions."""

from .codec import CENTRIFUGE, CentrifugeCodec
from .codes import CLOSE_CODES
from .connect import RpcHook
from .endpoint import AuthBudget, Endpoint, Gate

__all__ = ["CENTRIFUGE", "CLOSE_CODES", "AuthBudget", "CentrifugeCodec", "Endpoint", "Gate",
           "RpcHook"]
