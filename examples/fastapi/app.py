"""pubsocket inside a FastAPI app: mounted at /rt, started by FastAPI's lifespan, with
tokens minted by the app's own login route.

    API_KEY=... SECRET=... uvicorn app:app --app-dir examples/fastapi

Then open http://127.0.0.1:8000/ (sign in as alice / wonderland), or connect any
pubsocket client to ws://127.0.0.1:8000/rt/ws/chat with the token from ``POST /login``.
Under /rt: the hub (/rt/ws/chat), the HTTP API (/rt/api/publish, /rt/api/history),
the browser client (/rt/pubsocket.js) and the ops page (/rt/admin, API key only).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel

from pubsocket import App, ASGIApp, Settings, admin, pubsub

HERE = Path(__file__).resolve().parent
ROOMS = ["room:*", "news"]

# The realtime part: settings from the environment (SECRET signs the tokens; API_KEY is
# for /rt/admin and scripts), the hub with presence, the ops page.
realtime = App(Settings.from_env())
pubsub("/ws/chat", app=realtime, secured=True, presence=["room:*"])
admin("/admin", app=realtime)
rt = ASGIApp(realtime)

# FastAPI does not pass lifespan events to mounted apps: hand it pubsocket's. With a
# lifespan of your own, nest it: `async with rt.lifespan(app): yield`.
app = FastAPI(lifespan=rt.lifespan)
app.mount("/rt", rt)

# DEMO user store: use your own (a database and a password hasher).
USERS = {"alice": "wonderland", "bob": "builder"}


class Credentials(BaseModel):
    username: str
    password: str


class Announcement(BaseModel):
    text: str


@app.post("/login")
async def login(credentials: Credentials) -> dict[str, Any]:
    """Check the password, then mint a 10-minute pubsocket token for this user. The
    page's client calls this again when the server says the token is expiring."""
    expected = USERS.get(credentials.username)
    if expected is None or not hmac.compare_digest(expected.encode(),
                                                   credentials.password.encode()):
        raise HTTPException(status_code=401, detail="wrong username or password")
    token = rt.auth.issue(
        sub=credentials.username, ttl=600,
        claims={"info": {"name": credentials.username.title()},
                # What this user may do, checked on every command (docs/protocol.md).
                "topics": {"subscribe": ROOMS, "publish": ["room:*"],
                           "history": ROOMS, "presence": ROOMS}})
    return {"token": token}


@app.post("/announce")
async def announce(announcement: Announcement) -> dict[str, Any]:
    """Publish from an ordinary route: every subscriber of "news" gets it. (No auth on
    this demo route; guard yours.)"""
    published = await realtime.hub.publish("news", {"text": announcement.text})
    return {"offset": published.offset}


@app.get("/")
async def index() -> FileResponse:
    return FileResponse(HERE / "index.html")
