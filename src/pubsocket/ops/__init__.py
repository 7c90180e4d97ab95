"""The HTTP front doors' operations: `Operations` over the shared checks and reads of
`hub.operations` (which the socket commands use too), and the HTTP dialects' error
tables (docs/design.md "The seams", Operations)."""

from .api import HistoryQuery, NodeInfo, Operations
from .errors import (
    CENTRIFUGO,
    HTTP,
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

__all__ = ["CENTRIFUGO", "HTTP", "BadRequest", "HistoryQuery", "InvalidTopic",
           "LimitExceeded", "MethodNotFound", "MissingData", "NodeInfo", "NotAvailable",
           "OpError", "Operations", "PermissionDenied", "Unavailable",
           "UnrecoverablePosition"]
