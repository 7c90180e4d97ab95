"""The chat demo (examples/chat) in headless Chromium: two people chat, one drops off the
network and comes back to every missed message exactly once, the member list follows.

"Goes offline" is Playwright's ``context.set_offline(True)``: the page gets the browser's
``offline`` event, on which the client drops its socket (Chromium's offline emulation
alone leaves an open WebSocket untouched) and its reconnect attempts then fail for real
until ``set_offline(False)`` fires ``online``. The server sees a real close, so the other
side's member list loses the user, and the return is a real reconnect with ``since``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import websockets

from pubsocket import load_app
from tests.app.test_http import ahttp
from tests.conftest import SECRET, make_settings

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"
WAIT_MS = 8000
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1000, "height": 640}

_COUNT = """([room, text]) => [...document.querySelectorAll(
    `.room-log[data-room="${room}"] .msg .text`)].filter((e) => e.textContent === text).length"""
TRANSPORT = "() => document.querySelector('#state').dataset.transport"
_MEMBERS = "() => [...document.querySelectorAll('#members li')].map((e) => e.textContent)"


async def enter(context: Any, url: str, nick: str, errors: list[str],
                sockets: list[Any] | None = None) -> Any:
    """A page of `context` that entered the chat as `nick` and is connected; its script
    errors go to `errors`, its WebSockets to `sockets`."""
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{nick}: {exc}"))
    if sockets is not None:
        page.on("websocket", lambda ws: sockets.append(ws))
    await page.goto(url)
    await page.fill("#nick", nick)
    await page.click("#join button")
    await state_is(page, "connected")
    return page


async def state_is(page: Any, state: str) -> None:
    await page.wait_for_selector(f'#state[data-state="{state}"]', timeout=WAIT_MS)


async def members_are(page: Any, names: list[str]) -> None:
    await page.wait_for_function(
        f"() => ({_MEMBERS})().join(',') === {','.join(names)!r}", timeout=WAIT_MS)


async def say(page: Any, text: str, room: str = "lobby") -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await shows(page, text, 1, room)


async def shows(page: Any, text: str, times: int, room: str = "lobby") -> None:
    await page.wait_for_function(f"() => ({_COUNT})([{room!r}, {text!r}]) >= {times}",
                                 timeout=WAIT_MS)


async def count(page: Any, text: str, room: str = "lobby") -> int:
    result: int = await page.evaluate(_COUNT, [room, text])
    return result


class TwoPeople(NamedTuple):
    desk: Any  # alice's browser context (a desktop viewport)
    phone: Any  # bob's (a phone viewport)
    alice: Any
    bob: Any
    errors: list[str]  # both pages' script errors
    sockets: list[Any]  # bob's page's WebSockets


async def two_people(browser: Any, url: str) -> TwoPeople:
    """alice on a desktop and bob on a phone, each in a new context, entered at `url`
    and connected."""
    desk = await browser.new_context(viewport=DESKTOP)
    phone = await browser.new_context(viewport=PHONE)
    errors: list[str] = []
    sockets: list[Any] = []
    alice = await enter(desk, url, "alice", errors)
    bob = await enter(phone, url, "bob", errors, sockets)
    return TwoPeople(desk, phone, alice, bob, errors, sockets)


async def greet(alice: Any, bob: Any) -> None:
    """Both see each other in the lobby, and a message each way arrives once."""
    await members_are(alice, ["alice", "bob"])
    await members_are(bob, ["alice", "bob"])
    await say(alice, "hello from alice")
    await shows(bob, "hello from alice", 1)
    await say(bob, "hi alice")
    await shows(alice, "hi alice", 1)


async def miss_while_offline(alice: Any, bob: Any, phone: Any) -> list[str]:
    """Bob's context goes offline: he is reconnecting, gone from alice's list, and
    gets none of the messages alice says meanwhile (returned)."""
    await phone.set_offline(True)
    await state_is(bob, "reconnecting")
    await members_are(alice, ["alice"])  # the server saw bob's connection end
    missed = [f"while bob was away {n}" for n in range(1, 5)]
    for text in missed:
        await say(alice, text)
    await asyncio.sleep(0.3)  # bob's retries meet the offline network meanwhile
    assert [await count(bob, text) for text in missed] == [0, 0, 0, 0]
    return missed


async def come_back(alice: Any, bob: Any, phone: Any, missed: list[str],
                    transport: str | None = None) -> None:
    """Bob's context is online again: he recovers (over `transport` if given), gets
    every `missed` message, both lists have both, and a new message reaches him."""
    await phone.set_offline(False)
    await state_is(bob, "recovered")
    if transport is not None:
        assert await bob.evaluate(TRANSPORT) == transport
    for text in missed:
        await shows(bob, text, 1)
    await members_are(alice, ["alice", "bob"])
    await members_are(bob, ["alice", "bob"])
    await say(alice, "welcome back")
    await shows(bob, "welcome back", 1)


async def each_once(bob: Any, missed: list[str]) -> None:
    """Every message bob got is on his page exactly once."""
    await asyncio.sleep(0.3)  # a duplicate would arrive right behind the original
    for text in [*missed, "hello from alice", "hi alice", "welcome back"]:
        assert await count(bob, text) == 1, text


async def test_two_people_chat_and_one_recovers_what_it_missed(
        serve: Any, browser: Any, output_dir: Path) -> None:
    running = await serve(load_app(CHAT, make_settings()))
    url = running.http + "/"
    desk, phone, alice, bob, errors, sockets = await two_people(browser, url)

    await greet(alice, bob)
    await alice.wait_for_selector("text=bob joined", timeout=WAIT_MS)
    await alice.screenshot(path=str(output_dir / "chat-desktop.png"))
    await bob.screenshot(path=str(output_dir / "chat-phone.png"))

    missed = await miss_while_offline(alice, bob, phone)
    await bob.screenshot(path=str(output_dir / "chat-phone-offline.png"))

    await come_back(alice, bob, phone, missed)
    await each_once(bob, missed)
    assert len(sockets) >= 2, "bob's page should have opened a second WebSocket"
    await bob.screenshot(path=str(output_dir / "chat-phone-recovered.png"))

    # A second room: its own log and members; back in the lobby, all is as it was.
    await alice.fill("#room-name", "random")
    await alice.press("#room-name", "Enter")
    await alice.wait_for_selector('#room-title:text-is("# random")', timeout=WAIT_MS)
    await members_are(alice, ["alice"])
    await say(alice, "anyone here?", "random")
    await alice.click('#rooms button:has-text("lobby")')
    await members_are(alice, ["alice", "bob"])
    assert await count(alice, "anyone here?") == 0
    await alice.screenshot(path=str(output_dir / "chat-desktop-recovered.png"))

    # A late joiner gets the room's history; the phone layout fits 375 px.
    late = await browser.new_context(viewport=PHONE)
    carol = await enter(late, url, "carol", errors)
    for text in ["hello from alice", *missed, "welcome back"]:
        await shows(carol, text, 1)
    width = await carol.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    await late.close()

    await phone.close()
    await members_are(alice, ["alice"])
    await alice.wait_for_selector("text=bob left", timeout=WAIT_MS)
    await alice.screenshot(path=str(output_dir / "chat-desktop-after.png"))
    assert errors == []
    await desk.close()


_WHO = """([room, text]) => [...document.querySelectorAll(
    `.room-log[data-room="${room}"] .msg`)].filter((e) => e.querySelector(".text")
    .textContent === text).map((e) => e.querySelector(".who").textContent)"""


async def test_the_sender_shown_is_the_one_the_server_attests(serve: Any, browser: Any) -> None:
    # A publisher cannot claim another name in its data: the demo shows `from`, which
    # the server fills from the publisher's token; the API key's publishes show "server".
    app = load_app(CHAT, make_settings())
    running = await serve(app)
    context = await browser.new_context(viewport=DESKTOP)
    errors: list[str] = []
    alice = await enter(context, running.http + "/", "alice", errors)
    mallory = app.auth.issue(sub="mallory#1", ttl=600, claims={"info": {"name": "Mallory"}})
    async with websockets.connect(running.ws + "/ws/chat", subprotocols=["pubsocket.v1"],
                                  additional_headers={"Authorization": f"Bearer {mallory}"}
                                  ) as ws:
        await ws.send(orjson.dumps({"action": "publish", "topic": "room:lobby", "id": 1,
                                    "data": {"text": "i am alice", "name": "alice"}}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ack"
    await app.hub.publish("room:lobby", {"text": "from the backend"})
    await shows(alice, "i am alice", 1)
    await shows(alice, "from the backend", 1)
    assert await alice.evaluate(_WHO, ["lobby", "i am alice"]) == ["Mallory"]
    assert await alice.evaluate(_WHO, ["lobby", "from the backend"]) == ["server"]
    assert errors == []
    await context.close()


async def test_demo_token_route(serve: Any) -> None:
    """DEMO ONLY route: a token for any nick, limited to ``room:*``, one `sub` per session."""
    app = load_app(CHAT, make_settings())
    running = await serve(app)

    async def mint(body: object) -> tuple[int, Any]:
        status, _, raw = await ahttp("POST", running.http + "/demo/token",
                                     orjson.dumps(body), {"Content-Type": "application/json"})
        return status, orjson.loads(raw)

    status, reply = await mint({"nick": " Alice ", "session": "0123abcd"})
    # The suffix is derived from the session with the SECRET, not the session itself:
    # no one can mint a token with another tab's exact `sub` by sending its session.
    tag = base64.urlsafe_b64encode(hmac.new(
        SECRET.encode(), b"demo-sub:0123abcd", hashlib.sha256).digest()).decode()[:12]
    assert status == 200 and reply["sub"] == f"Alice#{tag}"
    assert "0123abcd" not in reply["sub"]
    claims = app.auth.verify([f"Bearer {reply['token']}"])
    assert claims["sub"] == reply["sub"] and claims["info"] == {"name": "Alice"}
    assert claims["exp"] - claims["iat"] == 600
    assert claims["topics"] == {action: ["room:*"]
                                for action in ("subscribe", "publish", "presence", "history")}
    assert (await mint({"nick": "Alice", "session": "0123abcd"}))[1]["sub"] == reply["sub"]
    assert (await mint({"nick": "Bob", "session": "0123abce"}))[1]["sub"] != f"Bob#{tag}"
    other = (await mint({"nick": "Carol", "session": "no!"}))[1]["sub"]
    assert other.startswith("Carol#") and not other.endswith(tag)
    for bad in ({"nick": ""}, {"nick": "x" * 25}, {"nick": "<b>"}, {}, ["nick"]):
        status, refusal = await mint(bad)
        assert (status, refusal["error"]) == (400, "bad_nick"), bad


async def test_demo_nicknames_are_unique_up_to_look_alikes(serve: Any) -> None:
    """Another session cannot take a held nickname, nor one that looks like it (NFKC,
    case, Unicode confusables); the holder's own session can, to refresh its token."""
    running = await serve(load_app(CHAT, make_settings()))

    async def mint(nick: str, session: str) -> tuple[int, Any]:
        status, _, raw = await ahttp("POST", running.http + "/demo/token",
                                     orjson.dumps({"nick": nick, "session": session}),
                                     {"Content-Type": "application/json"})
        return status, orjson.loads(raw)

    assert (await mint("Alice", "aaaa0001"))[0] == 200
    assert (await mint("Paypal", "aaaa0002"))[0] == 200
    # Case, fullwidth (NFKC), Cyrillic A, capital "I" for "l", Greek Alpha, Cyrillic a.
    for look_alike in ("alice", "\uff21\uff2c\uff29\uff23\uff25", "\u0410lice", "AIice",
                       "\u0391lice", "p\u0430ypaI"):
        status, refusal = await mint(look_alike, "bbbb0001")
        assert (status, refusal["error"]) == (409, "nick_taken"), look_alike
        assert "pick another" in refusal["message"]
    assert (await mint("Alice", "aaaa0001"))[0] == 200  # the holder refreshes
    assert (await mint("Alicia", "bbbb0001"))[0] == 200  # a different name is fine


async def test_demo_tokens_are_limited_per_address(serve: Any) -> None:
    running = await serve(load_app(CHAT, make_settings()))
    statuses, retry = [], None
    for i in range(14):
        status, headers, _ = await ahttp(
            "POST", running.http + "/demo/token",
            orjson.dumps({"nick": f"user{i}", "session": f"cccc{i:04d}"}),
            {"Content-Type": "application/json"})
        statuses.append(status)
        retry = headers.get("Retry-After", retry)
    assert statuses[:10] == [200] * 10 and set(statuses[10:]) == {429}
    assert retry is not None and 1 <= int(retry) <= 6
