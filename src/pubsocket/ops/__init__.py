"""The HTTP front doors' operations: `Operations` over the shared checks and reads of
`hub.operations` (which the socket commands use too), the HTTP dialects' error
tables (docs/design.md "The seams", Operations), and the failure types they map, which
errors.py defines (re-exported here so that a front door imports one package)."""

from ..errors import (
    BadRequest,
    InvalidTopic,
    LimitExceeded,
    MethodNotFound,
    MissingData,
    NotAvailable,
    OpError,
    PermissionDenied,
    Unavailable,
    UnrecoverablePosition,
)
from .api import HistoryQuery, NodeInfo, Operations
from .errors import CENTRIFUGO, HTTP

__all__ = ["CENTRIFUGO", "HTTP", "BadRequest", "HistoryQuery", "InvalidTopic",
           "LimitExceeded", "MethodNotFound", "MissingData", "NodeInfo", "NotAvailable",
           "OpError", "Operations", "PermissionDenied", "Unavailable",
           "UnrecoverablePosition"]
