"""Which Centrifuge variant a connection speaks, chosen at the upgrade: JSON or Protobuf.

A client asks for Protobuf the way Centrifugo lets it: the WebSocket subprotocol
``centrifuge-protobuf`` (what centrifuge-js's protobuf build and centrifuge-python with
``use_protobuf=True`` offer; the server selects it in the 101), or the query parameter
``cf_protocol=protobuf`` or ``format=protobuf``. Its session then runs on the Protobuf
endpoint (same hooks and settings, the Protobuf codec, its own pinger for the binary
ping) and its wire is (Protobuf codec x the transport's binary framing). The
``protobuf`` package is imported on the first such client only; without it the upgrade
is refused with 400 ``protobuf_unavailable``.
"""

from __future__ import annotations

import logging
from typing import Final

from ..auth import offered_subprotocols
from ..errors import HTTPError
from ..protocols.centrifuge import AuthBudget, Endpoint, RpcHook
from .request import Request

SUBPROTOCOL: Final = "centrifuge-protobuf"  # = protocols.centrifuge.protobuf_codec.SUBPROTOCOL
_UNAVAILABLE = "this server does not speak Centrifuge Protobuf"
log = logging.getLogger("pubsocket.app")


def wants_protobuf(request: Request) -> bool:
    """Whether the upgrade asks for the Protobuf variant (see the module docstring)."""
    if request.query_string:
        params = request.params
        if params.get("cf_protocol") == "protobuf" or params.get("format") == "protobuf":
            return True
    values = request.headers.getall("sec-websocket-protocol")
    return bool(values) and SUBPROTOCOL in offered_subprotocols(values)


class ProtobufEndpoint:
    """The Protobuf twin of one JSON `Endpoint`, made on first use."""

    __slots__ = ("_budget", "_connect_timeout", "_endpoint", "_missing", "_ping", "_rpc",
                 "_secured")

    def __init__(self, ping: float, *, secured: bool, rpc: RpcHook | None,
                 connect_timeout: float = 0.0, budget: AuthBudget | None = None) -> None:
        self._ping = ping
        self._budget = budget
        self._connect_timeout = connect_timeout
        self._secured = secured
        self._rpc = rpc
        self._endpoint: Endpoint | None = None
        self._missing = False  # the import failed once: refuse without retrying or logging

    def get(self) -> Endpoint:
        """The endpoint; raises `HTTPError` 400 when ``protobuf`` is not installed."""
        if self._missing:
            raise HTTPError(400, "protobuf_unavailable", _UNAVAILABLE)
        if self._endpoint is None:
            try:
                from ..protocols.centrifuge.protobuf_codec import CENTRIFUGE_PROTOBUF, PING
            except ImportError:
                log.warning("a Centrifuge client asked for Protobuf, but the protobuf "
                            "package is not installed (pip install "
                            "'pubsocket[centrifuge-protobuf]')")
                self._missing = True
                raise HTTPError(400, "protobuf_unavailable", _UNAVAILABLE) from None
            self._endpoint = Endpoint(self._ping, secured=self._secured, rpc=self._rpc,
                                      codec=CENTRIFUGE_PROTOBUF, ping_payload=PING,
                                      connect_timeout=self._connect_timeout,
                                      budget=self._budget)
        return self._endpoint
