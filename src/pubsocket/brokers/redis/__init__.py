"""The Redis broker, as a package (docs/design.md "Redis data layout").

* `broker`: `RedisBroker` (publish, history, subscribe; the `Broker` contract);
* `reader`: its subscriber connection (re-subscribe, dispatch, PING, resync);
* `pipeline`: publishes pipelined on one ordered connection;
* `scripts`: the Lua scripts, key names and message framing, one place for all;
* `options`: the URL's ``prefix`` and the reconnect backoff;
* `sync`: the same publish command from a thread without a loop (`Publisher`).

Importing this package imports redis-py: `brokers.broker_from_url` does so only for
``redis://`` URLs.
"""

from .broker import RedisBroker
from .options import DEFAULT_PREFIX, BackoffPolicy, backoff

__all__ = ["DEFAULT_PREFIX", "BackoffPolicy", "RedisBroker", "backoff"]
