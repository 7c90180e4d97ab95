"""Options of the Redis broker: the URL's ``prefix`` and the reconnect backoff."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PREFIX = "pubsocket:"
BackoffPolicy = Callable[[], Iterator[float]]


def backoff(
    initial: float = 0.05, factor: float = 2.0, maximum: float = 2.0, jitter: bool = False
) -> Iterator[float]:
    """Endless reconnect delays in seconds: `initial`, then times `factor`, capped at `maximum`.

    With `jitter` each delay is drawn from [delay/2, delay], so that the nodes that lost
    the same Redis do not all come back in the same instant.
    """
    delay = initial
    while True:
        yield delay * random.uniform(0.5, 1.0) if jitter else delay
        delay = min(delay * factor, maximum)


def split_prefix(url: str) -> tuple[str, str]:
    """(channel prefix, the URL without ``prefix``): redis-py rejects unknown options."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = dict(query).get("prefix", DEFAULT_PREFIX)
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return prefix, urlunsplit(parts._replace(query=rest))
