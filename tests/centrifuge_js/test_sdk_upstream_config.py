"""centrifuge-js against servers configured from the SDK suites' own upstream configs.

`tests/centrifuge/upstream_config.json` is centrifuge-python's docker-compose.yml
translated to JSON (its live suite runs in tests/centrifuge/test_upstream_python.py);
`tests/centrifuge_js/upstream_config.json` is centrifuge-js's own `centrifugo_test.json`.
Each is served the way `pubsocket serve` serves a config file alone
(`upstream_server.upstream_app`: `mount_centrifugo` on an empty app), and the real
centrifuge-js SDK uses it through a TCP proxy that can cut the network: connect with a
token signed with the file's key (or none where the file says ``client.insecure``),
subscribe, publish, history, presence, and recovery of what was missed while cut.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.centrifuge_js.harness import SdkClient, sdk_client
from tests.centrifuge_js.proxy import proxy_to
from tests.centrifuge_js.upstream_server import CONFIG as JS_CONFIG
from tests.centrifuge_js.upstream_server import upstream_app

PY_CONFIG = Path(__file__).resolve().parents[1] / "centrifuge" / "upstream_config.json"
RECOVER = {"recoverable": True, "positioned": True}
PATH = "/connection/websocket"  # where the config file mounts the endpoint


def signed(user: str, **claims: Any) -> str:
    """A token as the suites' backends make them: HS256 with "secret" (which PyJWT warns
    is short: the suites' key, not ours to lengthen)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode({"sub": user, **claims}, "secret", algorithm="HS256")


async def recovers(sdk: SdkClient, proxy: Any, publish: Callable[[int], Awaitable[None]],
                   channel: str) -> None:
    """Cut the network, publish three while the SDK is away, and see all three arrive
    once, recovered, in order."""
    before = len(sdk.publications(channel))
    proxy.cut()
    await sdk.expect("connecting", lambda e: e["code"] != 0)
    for i in range(3):
        await publish(i)
    proxy.resume()
    again = await sdk.expect("subscribed", lambda e: e["channel"] == channel
                             and e["wasRecovering"])
    assert again["recovered"] is True, again
    for _ in range(3):
        await sdk.expect("publication", lambda e: e["channel"] == channel)
    got = [e["offset"] for e in sdk.publications(channel)]
    assert got == list(range(1, before + 4)), got


@pytest.mark.parametrize(("config", "user", "channel"), [
    (PY_CONFIG, "42", "example:upstream"),  # centrifuge-python's compose file
    (JS_CONFIG, None, "upstream"),  # centrifuge-js's centrifugo_test.json: insecure
], ids=["python-compose", "js-centrifugo_test"])
async def test_the_sdk_uses_a_server_configured_from_upstream(
        serve: Any, config: Path, user: str | None, channel: str) -> None:
    srv = await serve(upstream_app(config))
    hub = srv.app.hub

    async def publish(i: int) -> None:
        await hub.publish(channel, {"server": i})

    args = {} if user is None else {"token": signed(user)}
    async with proxy_to(srv.port) as proxy, sdk_client(
            f"ws://127.0.0.1:{proxy.port}{PATH}", **args) as sdk:
        sdk.send("connect")
        await sdk.expect("connected")
        # The compose file lets no client subscribe on its own word: a subscription
        # token opens the channel, as in the python suite.
        opts = RECOVER if user is None else {
            **RECOVER, "token": signed(user, channel=channel)}
        sdk.send("sub", channel=channel, opts=opts)
        await sdk.expect("subscribed", lambda e: e["channel"] == channel)
        res = await sdk.request("publish", channel, data={"text": "hi"})
        assert res["ok"], res
        pub = await sdk.expect("publication", lambda e: e["channel"] == channel)
        assert pub["data"] == {"text": "hi"} and pub["offset"] == 1, pub
        hist = await sdk.request("history", channel)
        assert hist["ok"] and hist["value"]["offsets"] == [1], hist
        pres = await sdk.request("presence_stats", channel)
        assert pres["ok"] and pres["value"]["numClients"] == 1, pres
        await recovers(sdk, proxy, publish, channel)
