// The chat demo: rooms are topics "room:<name>" on the built-in hub at /ws/chat.
// History on join, a member list from presence plus join/leave pushes, and a badge with
// the connection state. Plain ES modules, no build step.
// Every URL is relative to this script, so the app works mounted under a prefix
// (`app.mount("/rt", asgi)` serves this page at /rt/ and the hub at /rt/ws/chat).
import { connect } from "./pubsocket.js";

const $ = (id) => document.getElementById(id);
const ROOM_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const HISTORY_ON_JOIN = 50;

/** @type {import("./pubsocket.js").Client | null} */
let client = null;
let nick = "";
let mySub = "";
/** @type {Map<string, Room>} */
const rooms = new Map();
let current = "";

/** @typedef {{name: string, topic: string, log: HTMLUListElement,
 *   members: Map<string, string>, unread: number}} Room */

// A random id per tab, so every token this tab gets has the same `sub` (a token
// refresh must be for the same user).
function sessionId() {
  let id = sessionStorage.getItem("pubsocket-demo-session");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("pubsocket-demo-session", id);
  }
  return id;
}

// DEMO ONLY: anyone can get a token from this route (see routes/demo_tokens.py).
async function demoToken() {
  const reply = await fetch(new URL("demo/token", import.meta.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ nick, session: sessionId() }),
  });
  if (reply.status === 404) throw new Error("the demo token route is turned off");
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(body.message || `token request failed (${reply.status})`);
  mySub = body.sub;
  return body.token;
}

const STATE_TEXT = {
  connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…",
  recovered: "recovered", closed: "disconnected",
};

function showState(event) {
  let state = event.state;
  let text = STATE_TEXT[state];
  if (state === "connected" && event.reconnected) {
    state = event.recovered ? "recovered" : "connected";
    text = event.recovered ? "recovered" : "reconnected (some messages missed)";
  }
  if (state === "reconnecting" && event.attempt > 0) text = `reconnecting… (try ${event.attempt + 1})`;
  // Where WebSocket is blocked the client falls back to HTTP streaming: say so.
  if (event.transport === "http_stream" && state !== "closed") text += " · over HTTP";
  $("state").dataset.state = state;
  $("state").dataset.transport = event.transport ?? "";
  $("state").textContent = text;
}

function nameOf(info, user) {
  return (info && typeof info.name === "string" && info.name) || (user ?? "anonymous").split("#")[0];
}

function addLine(room, li, { prepend = false } = {}) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (prepend) room.log.prepend(li);
  else room.log.append(li);
  if (room.name === current) {
    if (atBottom || prepend) box.scrollTop = box.scrollHeight;
  } else if (!prepend) {
    room.unread += 1;
    renderRooms();
  }
}

// The sender's name comes from `from`, which the server attests (the publisher's token),
// never from the message body; publishes without one (the API key, the server) show as
// "server".
function messageLine(data, offset, from) {
  const li = document.createElement("li");
  li.className = "msg";
  if (offset !== undefined) li.dataset.offset = String(offset);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = from ? nameOf(from.info, from.user) : "server";
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = typeof data?.text === "string" ? data.text : JSON.stringify(data);
  if (from && from.user === mySub) li.classList.add("mine");
  li.append(who, text);
  return li;
}

function notice(room, text, warn = false) {
  const li = document.createElement("li");
  li.className = warn ? "notice warn" : "notice";
  li.textContent = text;
  addLine(room, li);
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren(...[...rooms.values()].map((room) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `# ${room.name}`;
    button.setAttribute("aria-current", String(room.name === current));
    if (room.unread) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(room.unread);
      button.append(badge);
    }
    button.onclick = () => showRoom(room.name);
    li.append(button);
    return li;
  }));
}

function renderMembers() {
  const room = rooms.get(current);
  const names = room ? [...room.members.values()].sort((a, b) => a.localeCompare(b)) : [];
  $("members").replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    return li;
  }));
  $("member-count").textContent = `(${names.length})`;
}

function showRoom(name) {
  current = name;
  const room = rooms.get(name);
  room.unread = 0;
  $("messages").replaceChildren(room.log);
  $("messages").scrollTop = $("messages").scrollHeight;
  $("room-title").textContent = `# ${name}`;
  renderRooms();
  renderMembers();
}

async function loadPresence(room) {
  try {
    const clients = await client.presence(room.topic);
    room.members.clear();
    for (const { user, info } of Object.values(clients)) room.members.set(user, nameOf(info, user));
  } catch (err) {
    notice(room, `Could not read who is here: ${err.message}`, true);
  }
  if (room.name === current) renderMembers();
}

async function joinRoom(name) {
  if (rooms.has(name)) return showRoom(name);
  const log = document.createElement("ul");
  log.className = "room-log";
  log.dataset.room = name;
  const room = { name, topic: `room:${name}`, log, members: new Map(), unread: 0 };
  rooms.set(name, room);
  showRoom(name);
  let ack;
  try {
    // Subscribe first, then read history up to the ack's offset: nothing published in
    // between is lost or shown twice (live deliveries all have higher offsets).
    ack = await client.subscribe(room.topic, (data, message) => {
      addLine(room, messageLine(data, message.offset, message.from));
    }, {
      onJoin: (e) => {
        room.members.set(e.user, nameOf(e.info, e.user));
        if (e.user !== mySub) notice(room, `${nameOf(e.info, e.user)} joined`);
        if (room.name === current) renderMembers();
      },
      onLeave: (e) => {
        room.members.delete(e.user);
        notice(room, `${nameOf(e.info, e.user)} left`);
        if (room.name === current) renderMembers();
      },
      // After a reconnect, who is here may have changed while we were away.
      onSubscribed: (info) => { if (info.resubscribed) loadPresence(room); },
      onGap: () => notice(room, "Some messages could not be recovered while you were away.", true),
      onUnsubscribed: (reason) => notice(room, `You left this room (${reason}).`, true),
    });
  } catch (err) {
    notice(room, `Could not join: ${err.message}`, true);
    return;
  }
  try {
    const history = await client.history(room.topic, { limit: HISTORY_ON_JOIN });
    const older = history.publications.filter(
      (p) => ack.offset === undefined || history.epoch !== ack.epoch || p.offset <= ack.offset);
    for (const p of older.reverse()) addLine(room, messageLine(p.data, p.offset, p.from), { prepend: true });
  } catch (err) {
    notice(room, `Could not load history: ${err.message}`, true);
  }
  await loadPresence(room);
}

$("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  nick = $("nick").value.trim();
  $("join-error").textContent = "";
  try {
    await demoToken();  // a clear message for a bad nick before any socket opens
  } catch (err) {
    $("join-error").textContent = err.message;
    return;
  }
  $("join").hidden = true;
  $("chat").hidden = false;
  // pubsocket.js turns the http(s) URL into ws(s).
  client = connect(new URL("ws/chat", import.meta.url).href, { token: demoToken });
  window.pubsocketDemo = { client, rooms };  // for the browser tests and the console
  showState({ state: "connecting" });
  client.on("state", showState);
  client.on("error", (err) => console.warn("pubsocket:", err.code, err.message));
  await joinRoom(location.hash.slice(1).match(ROOM_NAME) ? location.hash.slice(1) : "lobby");
  $("text").focus();
});

$("add-room").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("room-name").value.trim().toLowerCase();
  if (!ROOM_NAME.test(name)) {
    notice(rooms.get(current), "Room names: a-z, 0-9, - and _, up to 32 characters.", true);
    return;
  }
  $("room-name").value = "";
  joinRoom(name);
});

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  const room = rooms.get(current);
  if (!text || !room) return;
  $("text").value = "";
  try {
    await client.publish(room.topic, { text });
  } catch (err) {
    notice(room, `Not sent (${err.code}): ${text}`, true);
  }
});
