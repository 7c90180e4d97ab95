"""Finding 8: ``{sub}`` in a ``topics`` claim stands for one whole segment
(docs/protocol.md "The ``topics`` claim"). Real server, real clients.

With the old substitution the user ``bob:x`` owned ``private:bob:x:*`` while ``bob``'s
own pattern ``private:bob:*`` matched those topics too: ``bob`` could read ``bob:x``'s
private topics. Now a ``sub`` holding a separator gets nothing from ``{sub}`` (no user
can own a segment that contains one), so ``private:bob:...`` is ``bob``'s alone, and a
pattern with ``{sub}`` glued to anything but a separator is refused as malformed.
"""

from __future__ import annotations

from typing import Any

from tests.app.test_access import (
    app_with,
    client,
    frames_until_sentinel,
    is_forbidden,
    send,
    subscribe,
    token,
)
from tests.conftest import API_KEY

CLAIM = {"subscribe": ["private:{sub}", "private:{sub}:*", "chat:*"], "publish": []}


async def test_a_sub_with_a_separator_owns_no_topic_of_another_users_segment(
        serve: Any) -> None:
    srv = await serve(app_with())
    bob = await client(srv, token("bob", topics=CLAIM))
    bob_x = await client(srv, token("bob:x", topics=CLAIM))
    glued = await client(srv, token("bob", topics={"subscribe": ["private:{sub}*", "chat:*"]}))
    admin = await client(srv, API_KEY)
    try:
        # bob:x's "private topics" would sit inside bob's segment: refused to bob:x.
        assert is_forbidden(await subscribe(bob_x, "private:bob:x:inbox", 1), 1)
        assert is_forbidden(await subscribe(bob_x, "private:bob:x", 2), 2)
        assert (await subscribe(bob_x, "chat:lobby", 3))["type"] == "ack"  # the rest works
        # "{sub}*" would reach bobby's topics: the claim is malformed, nothing allowed.
        assert is_forbidden(await subscribe(glued, "private:bobby", 4), 4)
        assert is_forbidden(await subscribe(glued, "chat:lobby", 5), 5)
        # bob's own topics work as before.
        assert (await subscribe(bob, "private:bob:inbox", 6))["type"] == "ack"
        await send(admin, "publish", "private:bob:inbox", data="mine", id="p")
        await frames_until_sentinel(bob, "mine")
    finally:
        for ws in (bob, bob_x, glued, admin):
            await ws.close()
