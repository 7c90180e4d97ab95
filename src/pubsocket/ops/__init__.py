"""The operations layer: one `Operations` API behind every front door (docs/design.md)."""

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
