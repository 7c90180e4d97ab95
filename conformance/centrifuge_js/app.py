"""The server centrifuge-js's own test suite talks to (conformance/centrifuge_js/run.sh):
the Centrifuge endpoint with its emulation routes, configured like the suite's
Centrifugo (``centrifugo_test.json``: insecure clients, HMAC secret "secret", presence
and history on channels without a namespace), from config.json beside this file.

Run: ``python conformance/centrifuge_js/app.py PORT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pubsocket import App, pubsub
from pubsocket.brokers.base import HistoryPolicy
from pubsocket.config import Settings
from pubsocket.server import run

CONFIG = Path(__file__).with_name("config.json")


def make() -> App:
    app = App(Settings.from_env(centrifugo_config=str(CONFIG)))
    pubsub("/connection/websocket", app=app, protocol="centrifuge", presence=["*"],
           history={"*": HistoryPolicy(100, 300)})
    return app


if __name__ == "__main__":
    run(make, "127.0.0.1", int(sys.argv[1]))
