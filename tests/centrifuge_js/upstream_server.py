"""pubsocket configured by a Centrifugo config file, on the address an SDK's own test
suite expects its Centrifugo at (docs/centrifuge.md "The SDKs' own suites").

    python -m tests.centrifuge_js.upstream_server [config.json] [port]

serves what the file mounts (web/centrifugo_mount.py: Centrifuge at
``/connection/websocket``, unsecured when the file says ``client.insecure``, and
Centrifugo's server API at ``/api/<method>``) on 127.0.0.1 until interrupted. The
default config is centrifuge-js's ``centrifugo_test.json``
(`upstream_config.json` here), the default port 8000, as its docker-compose.yml has.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from pubsocket import App, Server, Settings
from pubsocket.web import mount_centrifugo

CONFIG = Path(__file__).with_name("upstream_config.json")


def upstream_app(config: Path) -> App:
    """An app with nothing but what `config` describes (as `pubsocket serve` of an app
    folder with an empty ``src/routes`` mounts it), at the SDKs' path."""
    settings = Settings.from_env({"PUBSOCKET_CENTRIFUGO_CONFIG": str(config)},
                                 env_file=None)
    app = App(settings)
    mount_centrifugo(app)
    return app


async def serve(config: Path, port: int) -> None:
    server = Server(upstream_app(config), "127.0.0.1", port)
    await server.start()
    print(f"serving {config.name} on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.shutdown()


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else CONFIG
    asyncio.run(serve(path, int(sys.argv[2]) if len(sys.argv) > 2 else 8000))
