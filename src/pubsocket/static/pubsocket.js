// pubsocket browser client: one ES module, no build step (docs/clients.md "Browser client").
// Speaks pubsocket.v1 (docs/protocol.md): integer ids, replies matched by id, per-call
// timeouts, reconnect with exponential backoff and full jitter, a fresh token on every
// attempt and on the server's `expiring` notice, resubscription with `since` and
// exactly-once replay (offsets at or below the last one seen are dropped). Browsers do
// not expose WebSocket pings, so the client asks for the server's application pings
// (`heartbeat`) and takes a link that stays silent longer than their interval + a
// margin as dead: a half-open connection (NAT timeout, a laptop resumed elsewhere)
// leaves "connected" within that bound instead of when TCP gives up, minutes later.
// Where a WebSocket cannot be opened at all (a proxy that refuses or strips the
// upgrade), the same client falls back to the pubsocket.v1 HTTP transport: a streamed
// POST response carries the server's messages, POSTs carry the commands
// (docs/clients.md "Transports and fallback"). Same API, same recovery, same heartbeat.
//
//   import { connect } from "./pubsocket.js";
//   const client = connect("ws/chat", { token: () => fetchToken() });  // or "ws://host/ws/chat"
//   await client.subscribe("room:lobby", (data, message) => show(data));
//   await client.publish("room:lobby", { text: "hi" });
//   client.close();

const SUBPROTOCOL = "pubsocket.v1";
const DEFAULT_TIMEOUT = 10_000;
// Close codes after which reconnecting would only repeat the failure
// (docs/protocol.md "Close codes"): protocol errors and "disconnected by the server".
const TERMINAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 4003]);
// Error codes that mean "retry later" (docs/protocol.md "Errors"): a subscribe refused
// with one is kept and sent again after a backoff, not given up.
const TEMPORARY_ERROR_CODES = new Set(["broker_unavailable"]);
const MAX_RETRY_DELAY = 30_000;
// Silence tolerated beyond the server's heartbeat interval: min(interval, 5 s), so the
// default 25 s interval means a dead link is noticed within 30 s.
const HEARTBEAT_MARGIN = 5_000;
// Fallback (docs/clients.md "Transports and fallback"). An attempt that fails before it
// is usable (closed before opening, or no first frame within `timeout`) is followed at
// once, without a backoff, by one on the other transport; when both failed the client
// waits for the backoff and starts again from the preferred one. The transport that
// worked is remembered for the page (and the tab, in sessionStorage) for
// REMEMBER_FALLBACK ms: after that the next reconnect tries WebSocket first again.
const TRANSPORTS = /** @type {const} */ (["websocket", "http_stream"]);
const REMEMBER_FALLBACK = 5 * 60_000;
// Proxies that let the upgrade through but kill upgraded connections soon after:
// SHORT_LIVED_DROPS WebSockets in a row, each lost abnormally (1006, no heartbeat)
// within SHORT_LIVED ms of opening, make the page prefer http_stream too.
const SHORT_LIVED = 30_000;
const SHORT_LIVED_DROPS = 3;
/** ws URL -> {transport, until}: which transport this page last saw working. */
const rememberedTransports = new Map();
// The HTTP transport's bounds: bytes of one unterminated line read from the stream
// (a message longer than this closes the transport, 1009); commands and bytes in one
// command POST; bytes waiting to be POSTed (beyond: the transport closes, 1009, as a
// WebSocket whose peer stopped reading would, and the client reconnects).
const MAX_STREAM_LINE = 16 << 20;
const MAX_POST_COMMANDS = 100;
const MAX_POST_BYTES = 512 << 10;
const MAX_UNSENT_BYTES = 4 << 20;

/**
 * @typedef {"websocket" | "http_stream"} Transport
 * @typedef {string | (() => string | Promise<string>)} TokenSource
 *   A token, or a function called before every connection attempt and on `expiring`.
 * @typedef {"connecting" | "connected" | "reconnecting" | "closed"} State
 * @typedef {{state: State, transport?: Transport, reconnected?: boolean,
 *   recovered?: boolean | null, attempt?: number, delay?: number, code?: number,
 *   reason?: string, fallback?: boolean}} StateEvent
 *   `transport`: on "connected" the one in use; on "connecting"/"reconnecting" the one
 *   the next attempt uses. `fallback: true`: the last attempt failed before it could be
 *   used and the next one, on the other transport, comes now (`delay` 0).
 *   `recovered` (on "connected" after a reconnect): every subscription resumed with
 *   nothing missed (true), or at least one could not be (false; its `onGap` was called)
 *   or is still being retried after a "retry later" error (false).
 * @typedef {{user: string | null, client: string, info?: unknown}} Sender
 *   Who published, as the server attests it (the publisher's token `sub` and `info`);
 *   absent for the API key and for server-side publishes.
 * @typedef {{type: "message", topic: string, offset?: number, data: unknown,
 *   from?: Sender}} Message
 * @typedef {{topic: string, offset: number, epoch: string,
 *   reason: "gap" | "not_recovered"}} Gap
 * @typedef {{topic: string, user: string | null, info: unknown, client: string}} PresenceEvent
 * @typedef {{topic: string, offset?: number, epoch?: string, recovered?: boolean,
 *   resubscribed: boolean}} Subscribed
 * @typedef {object} SubscribeOptions
 * @property {(gap: Gap) => void} [onGap] publications may be missing before `gap.offset`
 *   (a server `gap` notice, or a resubscribe answered `recovered: false`). On a topic
 *   without history a notice has offset 0 and epoch "": some may be lost, which is unknown.
 * @property {(event: PresenceEvent) => void} [onJoin] a user joined (presence topics).
 * @property {(event: PresenceEvent) => void} [onLeave] a user's last connection left.
 * @property {(ack: Subscribed) => void} [onSubscribed] every subscribe ack, also after
 *   each reconnect (re-read presence there).
 * @property {(reason: string) => void} [onUnsubscribed] the server ended it (e.g. a
 *   refreshed token no longer allows the topic, a resubscribe refused for good); it is
 *   not resumed. A "retry later" refusal (`broker_unavailable`) is retried instead.
 * @property {{offset: number, epoch: string}} [since] resume from a known position.
 * @property {number} [timeout] ms for the first ack (default: the client's), one
 *   deadline across reconnects and retries.
 * @typedef {object} ConnectOptions
 * @property {TokenSource} [token] sent in the subprotocol offer (`bearer`, token).
 * @property {(attempt: number) => number} [backoff] ms to wait before attempt n (0-based).
 * @property {number} [timeout] default per-call timeout in ms (10 000); also the time
 *   an attempt may take to open and answer the heartbeat request.
 * @property {number} [heartbeat] ms of silence after which the link is taken as dead
 *   and the client reconnects (state "reconnecting", code 1006, reason "no heartbeat").
 *   Default: the server's heartbeat interval + min(interval, 5 s), 30 s by default
 *   (no watch when the server sends none); 0: do not ask for pings, never watch.
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (tests, other runtimes).
 *   Without one (and without `globalThis.WebSocket`) the client uses only http_stream;
 *   without `fetch` and streamed bodies, only WebSocket.
 */

/** An error from the client or the server. `code`: "timeout", "forbidden" (the token
 * or the app refuses), "auth" (no token could be obtained), "closed" (`close()` was
 * called or the server said not to reconnect), "disconnected" (the connection dropped
 * before the reply; the command may or may not have taken effect), or a server error
 * code from docs/protocol.md (e.g. "invalid_topic", "presence_off"). */
export class PubsocketError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "PubsocketError";
    /** @type {string} */
    this.code = code;
  }
}

/** Full-jitter exponential backoff: a uniform wait in [0, min(30 s, 0.5 s * 2^attempt)).
 * @param {number} attempt @returns {number} */
export function defaultBackoff(attempt) {
  return Math.random() * Math.min(30_000, 500 * 2 ** Math.min(attempt, 16));
}

/** The WebSocket URL for `url`: ws:// and wss:// URLs as given; an http(s) URL or a
 * relative one (resolved against the page, so "ws/chat" works under any mount prefix)
 * with its scheme turned into ws(s).
 * @param {string | URL} url @returns {string} */
export function websocketUrl(url) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

/** Open a client; it connects at once and keeps reconnecting until `close()`.
 * `url` may be relative to the page or http(s) (`websocketUrl`).
 * @param {string | URL} url @param {ConnectOptions} [options] @returns {Client} */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export class Client {
  /** @param {string | URL} url @param {ConnectOptions} [options] */
  constructor(url, options = {}) {
    this.url = websocketUrl(url);
    /** @type {State} */
    this.state = "connecting";
    this._token = options.token;
    this._backoff = options.backoff ?? defaultBackoff;
    this._timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._heartbeat = options.heartbeat;
    /** ms of silence that mean a dead link on this socket (0: not watching) */
    this._silence = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._watchdog = null;
    this._heartbeatId = 0;  // the id of this socket's heartbeat request, until answered
    /** the current connection: a WebSocket or an HttpStreamSocket
     * @type {WebSocket | HttpStreamSocket | null} */
    this._ws = null;
    this._open = false;
    /** the transport of the current (or next) attempt @type {Transport} */
    this.transport = "websocket";
    /** transports still to try, now, before the next backoff @type {Transport[]} */
    this._round = this._order();
    this._usable = false;  // the current connection opened and something came back on it
    /** @type {string | undefined} */
    this._roundToken = undefined;  // the token of this round's first attempt
    this._reuseToken = false;
    this._openedAt = 0;
    this._shortDrops = 0;  // WebSockets in a row lost soon after opening
    this._nextId = 1;
    this._attempt = 0;
    this._everConnected = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._retryTimer = null;
    /** @type {Map<number, {resolve: (r: any) => void, reject: (e: Error) => void,
     *   timer: ReturnType<typeof setTimeout>, frame: object, sent: boolean,
     *   keep: boolean}>} */
    this._pending = new Map();
    /** @type {Map<string, Sub>} */
    this._subs = new Map();
    /** Topics whose subscribe went out on the current socket and was then given up
     * (timeout): a late ack or message for one means the server holds it; unsubscribe.
     * @type {Set<string>} */
    this._abandoned = new Set();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    this._onOnline = () => { if (this.state === "reconnecting") this._retryNow(); };
    this._onOffline = () => { if (this._ws) this._drop(); };
    if (globalThis.addEventListener) {
      // A browser that knows it lost the network says so; the socket itself may take a
      // ping timeout to notice. Either way recovery resumes every subscription.
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
    }
    this._connect();
  }

  /** Listen to "state" ({@link StateEvent}) or "error" (a {@link PubsocketError} that
   * belongs to no call: a failed token refresh, an error frame without id).
   * @param {"state" | "error"} event @param {Function} fn
   * @returns {() => void} removes the listener */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event)?.add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  /** Subscribe, and stay subscribed across reconnects until `unsubscribe`.
   * Resolves with the first ack ({@link Subscribed}); rejects with a PubsocketError
   * ("forbidden", "invalid_topic", "timeout", ...), and then is not kept (one given up
   * on timeout that the server acks later is unsubscribed). A "retry later" error
   * (`broker_unavailable`) is retried after a backoff until the timeout.
   * Subscribing to a topic again replaces its callbacks.
   * @param {string} topic @param {(data: any, message: Message) => void} onMessage
   * @param {SubscribeOptions} [options] @returns {Promise<Subscribed>} */
  subscribe(topic, onMessage, options = {}) {
    if (this.state === "closed") return Promise.reject(closedError());
    const existing = this._subs.get(topic);
    if (existing) {
      existing.onMessage = onMessage;
      existing.options = options;
      return existing.first;
    }
    const sub = new Sub(topic, onMessage, options);
    this._subs.set(topic, sub);
    this._abandoned.delete(topic);
    // One deadline for the first ack, whether the subscribe goes out now, after a
    // reconnect, or again after a "retry later" error.
    sub.armTimeout(options.timeout ?? this._timeout, (err) => this._abandon(sub, err));
    if (this._open) this._sendSubscribe(sub);
    return sub.first;
  }

  /** Stop following `topic` (a no-op for a topic not followed).
   * @param {string} topic @param {{timeout?: number}} [options] @returns {Promise<void>} */
  async unsubscribe(topic, options = {}) {
    const sub = this._subs.get(topic);
    if (!sub) return;
    this._subs.delete(topic);
    sub.fail(new PubsocketError("closed", "unsubscribed before the ack"));
    this._abandoned.delete(topic);
    if (this._open) await this._call({ action: "unsubscribe", topic }, options.timeout);
  }

  /** Publish `data` (any JSON value). Resolves with the ack ({offset} on topics with
   * history) once the server took it; waits for a connection if there is none.
   * @param {string} topic @param {unknown} data @param {{timeout?: number}} [options]
   * @returns {Promise<{offset?: number}>} */
  async publish(topic, data, options = {}) {
    const ack = await this._call({ action: "publish", topic, data }, options.timeout);
    return ack.offset === undefined ? {} : { offset: ack.offset };
  }

  /** The kept publications of `topic`, oldest first: the newest `limit` (default 1000),
   * or those after `since` (rejects "unrecoverable_position" if history no longer holds it).
   * @param {string} topic
   * @param {{limit?: number, since?: {offset: number, epoch: string}, timeout?: number}} [options]
   * @returns {Promise<{offset: number, epoch: string,
   *   publications: {offset: number, data: any, from?: Sender}[]}>} */
  async history(topic, options = {}) {
    /** @type {Record<string, unknown>} */
    const frame = { action: "history", topic };
    if (options.limit !== undefined) frame.limit = options.limit;
    if (options.since) frame.since = { offset: options.since.offset, epoch: options.since.epoch };
    const reply = await this._call(frame, options.timeout);
    return { offset: reply.offset, epoch: reply.epoch, publications: reply.publications };
  }

  /** Who is subscribed to `topic`: client id -> {user, info}.
   * @param {string} topic @param {{timeout?: number}} [options]
   * @returns {Promise<Record<string, {user: string | null, info: unknown}>>} */
  async presence(topic, options = {}) {
    return (await this._call({ action: "presence", topic }, options.timeout)).clients;
  }

  /** How many connections and distinct users are subscribed to `topic`.
   * @param {string} topic @param {{timeout?: number}} [options]
   * @returns {Promise<{connections: number, users: number}>} */
  async presenceStats(topic, options = {}) {
    const reply = await this._call({ action: "presence_stats", topic }, options.timeout);
    return { connections: reply.connections, users: reply.users };
  }

  /** Drop the current connection and reconnect (with recovery) now. */
  reconnect() {
    if (this.state === "closed") return;
    if (this._ws) this._drop();
    else this._retryNow();
  }

  /** Close for good: pending calls reject with "closed"; no reconnect. */
  close() {
    if (this.state === "closed") return;
    this._finish(1000, "closed by the client");
  }

  // -- connection ------------------------------------------------------------------

  async _connect() {
    if (this.state === "closed") return;
    let token = this._roundToken;
    // A fallback attempt reuses its round's token: if the other transport works with
    // the very token the first one failed with, the first one is what is blocked.
    const fallback = this._reuseToken;
    this._reuseToken = false;
    try {
      if (!fallback) token = this._roundToken = await this._getToken();
    } catch (err) {
      this._emit("error", new PubsocketError("auth", `no token: ${errorText(err)}`));
      this._scheduleRetry();
      return;
    }
    if (this.state === "closed") return;
    const offer = token ? [SUBPROTOCOL, "bearer", token] : [SUBPROTOCOL];
    const transport = this._round.shift() ?? this._order()[0];
    this.transport = transport;
    this._usable = false;
    let ws;
    try {
      ws = transport === "websocket" ? new this._WebSocket(this.url, offer)
        : new HttpStreamSocket(this.url, token);
    } catch (err) {
      this._emit("error", new PubsocketError("closed", `cannot connect: ${errorText(err)}`));
      if (this._round.length > 0) this._fallBack(1006, "cannot connect");
      else this._scheduleRetry();
      return;
    }
    this._ws = ws;
    // The upgrade, then the heartbeat answer, must come within the timeout: a handshake
    // into a black hole would otherwise wait for the browser's own, far longer, limit.
    if (this._heartbeat !== 0) this._watch(this._timeout);
    ws.onopen = () => { if (this._ws === ws) this._opened(); };
    // The close event follows an error; a listener is still needed, or Node's `ws`
    // package throws an unheard one. (Left in place when the socket is dropped.)
    ws.onerror = () => {};
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      this._usable = true;
      this._frame(event.data);
    };
    // A refused upgrade (401 for a bad token, 503, a proxy's 403) looks like close 1006
    // in browsers: the other transport is tried at once with the same token, then the
    // backoff as after a dropped link, and a fresh token.
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._lost(event.code);
      // The HTTP transport sees a 429's Retry-After (a WebSocket hides it): wait at least that.
      this._closed(event.code, event.reason, event.retryAfter ?? 0);
    };
  }

  /** The transports to try in a new round, preferred first: the one this page saw
   * working last (http_stream for REMEMBER_FALLBACK ms), else WebSocket; only those
   * this runtime has. @returns {Transport[]} */
  _order() {
    const ws = typeof this._WebSocket === "function";
    const http = typeof globalThis.fetch === "function" && typeof TextDecoder === "function";
    if (!http) return ["websocket"];
    if (!ws) return ["http_stream"];
    return recallTransport(this.url) === "http_stream" ? ["http_stream", "websocket"]
      : ["websocket", "http_stream"];
  }

  /** A WebSocket lost abnormally (1006: no close frame, or no heartbeat) soon after it
   * opened counts toward preferring http_stream; one that lived longer resets that.
   * @param {number} code */
  _lost(code) {
    if (this.transport !== "websocket" || !this._usable) return;
    if (code === 1006 && Date.now() - this._openedAt < SHORT_LIVED) {
      if (++this._shortDrops >= SHORT_LIVED_DROPS) {
        this._shortDrops = 0;
        rememberTransport(this.url, "http_stream");
      }
    } else {
      this._shortDrops = 0;
    }
  }

  async _getToken() {
    const source = this._token;
    if (typeof source === "function") return await source();
    return source;
  }

  _opened() {
    this._open = true;
    this._openedAt = Date.now();
    // The HTTP transport opens on the server's first line; a WebSocket without the
    // heartbeat has no reply to wait for.
    if (this.transport === "http_stream" || this._heartbeat === 0) this._usable = true;
    if (this._heartbeat !== 0) {
      this._heartbeatId = this._nextId++;
      this._write({ action: "heartbeat", id: this._heartbeatId });
      this._watch(this._timeout);
    }
    const resumes = [];
    for (const sub of this._subs.values()) resumes.push(this._sendSubscribe(sub));
    // Commands made while offline go out after the resubscribes, in call order.
    for (const [id, entry] of this._pending) {
      if (!entry.sent) { entry.sent = true; this._write({ ...entry.frame, id }); }
    }
    const reconnected = this._everConnected;
    Promise.all(resumes).then((results) => {
      if (!this._open || this._ws === null) return;
      this._attempt = 0;
      this._everConnected = true;
      this._round = [];
      rememberTransport(this.url, this.transport);
      const recovered = reconnected ? results.every((r) => r !== false) : null;
      this._setState({ state: "connected", transport: this.transport, reconnected,
        recovered });
    });
  }

  /** @param {number} code @param {string} reason */
  /** @param {number} code @param {string} reason @param {number} [retryAfter] ms the
   * server asked to wait before the next attempt */
  _closed(code, reason, retryAfter = 0) {
    this._unwatch();
    this._ws = null;
    this._open = false;
    this._abandoned.clear();  // the server dropped that socket's subscriptions with it
    for (const [id, entry] of this._pending) {
      if (entry.sent && !entry.keep) {
        this._settle(id, null, new PubsocketError(
          "disconnected", "the connection dropped before the reply"));
      }
    }
    for (const [id, entry] of this._pending) if (entry.keep) this._settle(id, false, null);
    if (TERMINAL_CLOSE_CODES.has(code)) {
      this._finish(code, reason || "closed by the server");
      return;
    }
    if (!this._usable && this._round.length > 0) {
      this._fallBack(code, reason);
      return;
    }
    this._scheduleRetry(code, reason, retryAfter);
  }

  /** The attempt failed before it could be used: try the next transport of this
   * round now (each transport once per round, so this is bounded).
   * @param {number} code @param {string} reason */
  _fallBack(code, reason) {
    if (this.state === "closed" || this._retryTimer !== null) return;
    this.transport = this._round[0];
    this._reuseToken = true;
    this._setState({ state: this._everConnected ? "reconnecting" : "connecting",
      transport: this.transport, attempt: this._attempt, delay: 0, code, reason,
      fallback: true });
    this._retryTimer = setTimeout(() => { this._retryTimer = null; this._connect(); }, 0);
  }

  _drop(reason = "dropped by the client") {
    const ws = this._ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(4000, "client reconnect"); } catch { /* already closing */ }
    this._closed(1006, reason);
  }

  /** (Re)start the dead-link timer: `ms` of silence from now (default: the current
   * bound) drops the socket and reconnects. @param {number} [ms] */
  _watch(ms) {
    if (ms !== undefined) this._silence = ms;
    if (this._watchdog !== null) clearTimeout(this._watchdog);
    this._watchdog = this._silence > 0 ? setTimeout(() => {
      this._watchdog = null;
      this._lost(1006);
      this._drop("no heartbeat");
    }, this._silence) : null;
  }

  _unwatch() {
    if (this._watchdog !== null) clearTimeout(this._watchdog);
    this._watchdog = null;
    this._silence = 0;
    this._heartbeatId = 0;
  }

  /** The server's answer to this socket's heartbeat request: watch for silence longer
   * than its interval + margin (or the `heartbeat` option); an older server's error
   * (or interval 0) means no pings will come. @param {any} msg */
  _heartbeatAnswer(msg) {
    this._heartbeatId = 0;
    const interval = msg.type === "ack" ? msg.interval : 0;
    if (typeof interval !== "number" || !(interval > 0)) {
      this._unwatch();
      return;
    }
    const ms = interval * 1000;
    this._watch(this._heartbeat ?? ms + Math.min(ms, HEARTBEAT_MARGIN));
  }

  /** @param {number} [code] @param {string} [reason] @param {number} [atLeast] ms to
   * wait at least (a Retry-After; capped at MAX_RETRY_DELAY) */
  _scheduleRetry(code, reason, atLeast = 0) {
    if (this.state === "closed" || this._retryTimer !== null) return;
    const attempt = this._attempt++;
    const delay = Math.max(0, this._backoff(attempt), Math.min(atLeast, MAX_RETRY_DELAY));
    this._round = this._order();  // a new round: the preferred transport first
    this.transport = this._round[0];
    this._setState({ state: "reconnecting", transport: this.transport, attempt, delay,
      code, reason });
    this._retryTimer = setTimeout(() => { this._retryTimer = null; this._connect(); }, delay);
  }

  _retryNow() {
    if (this._retryTimer === null) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._connect();
  }

  /** @param {number} code @param {string} reason */
  _finish(code, reason) {
    this.state = "closed";
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
    }
    const ws = this._ws;
    this._ws = null;
    this._open = false;
    this._unwatch();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(1000); } catch { /* already closing */ }
    }
    const error = closedError(code === 1000 ? undefined : `${reason} (${code})`);
    for (const id of [...this._pending.keys()]) this._settle(id, null, error);
    for (const sub of this._subs.values()) sub.fail(error);
    this._subs.clear();
    this._emit("state", { state: "closed", code, reason });
  }

  /** @param {StateEvent} event */
  _setState(event) {
    this.state = event.state;
    this._emit("state", event);
  }

  /** @param {string} name @param {unknown} value */
  _emit(name, value) {
    for (const fn of this._listeners.get(name) ?? []) {
      try { fn(value); } catch (err) { reportLater(err); }
    }
  }

  // -- commands --------------------------------------------------------------------

  /** Send `frame` with a fresh id; resolve with the reply, reject on error or timeout.
   * @param {Record<string, unknown>} frame @param {number} [timeout]
   * @param {boolean} [keep] a resubscribe: resolved with false instead of rejected
   *   when the connection drops. @returns {Promise<any>} */
  _call(frame, timeout, keep = false) {
    if (this.state === "closed") return Promise.reject(closedError());
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const ms = timeout ?? this._timeout;
      const timer = setTimeout(() => this._settle(id, null, new PubsocketError(
        "timeout", `no reply to ${frame.action} within ${ms} ms`)), ms);
      const sent = this._open;
      this._pending.set(id, { resolve, reject, timer, frame, sent, keep });
      if (sent) this._write({ ...frame, id });
    });
  }

  /** @param {number} id @param {any} reply @param {Error | null} error */
  _settle(id, reply, error) {
    const entry = this._pending.get(id);
    if (!entry) return;
    this._pending.delete(id);
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(reply);
  }

  /** @param {object} frame */
  _write(frame) {
    try { this._ws?.send(JSON.stringify(frame)); } catch { /* the close event follows */ }
  }

  /** Subscribe (with `since` when resuming); resolves true / false (recovered or not)
   * or null for a first subscribe, and never rejects. A resubscribe refused with a
   * temporary error resolves false (not resumed yet) and is retried after a backoff.
   * @param {Sub} sub @returns {Promise<boolean | null>} */
  async _sendSubscribe(sub) {
    /** @type {Record<string, unknown>} */
    const frame = { action: "subscribe", topic: sub.topic };
    const since = sub.position();
    if (since) frame.since = since;
    const ws = this._ws;
    sub.sentOn = ws;
    // Until the first ack the caller's deadline bounds every attempt.
    const timeout = sub.acked ? undefined : sub.remaining();
    let ack;
    try {
      ack = await this._call(frame, timeout, true);
    } catch (err) {
      if (this._subs.get(sub.topic) !== sub) return null;
      const code = err instanceof PubsocketError ? err.code : "error";
      if (code === "timeout") {
        if (!sub.acked) {
          this._abandon(sub, /** @type {Error} */ (err));
          return null;
        }
        this._drop();  // a resubscribe that hangs: start over rather than half-subscribed
        return false;
      }
      if (TEMPORARY_ERROR_CODES.has(code)) {
        // "Retry later": keep the subscription (and its position) and send it again on
        // this socket; a new socket resubscribes anyway.
        sub.lastError = /** @type {Error} */ (err);
        const delay = Math.min(MAX_RETRY_DELAY, Math.max(0, this._backoff(sub.retries++)));
        sub.retryLater(delay, () => {
          if (this._subs.get(sub.topic) === sub && this._open && this._ws === ws) {
            this._sendSubscribe(sub);
          }
        });
        return sub.acked ? false : null;
      }
      this._subs.delete(sub.topic);
      sub.fail(/** @type {Error} */ (err));
      if (sub.acked && sub.options.onUnsubscribed) {
        // A resubscribe refused (e.g. the fresh token no longer allows the topic).
        safely(sub.options.onUnsubscribed, err instanceof PubsocketError ? err.code : "error");
      }
      return null;
    }
    if (ack === false || this._subs.get(sub.topic) !== sub) return false;
    return sub.acknowledged(ack, since !== null);
  }

  /** Give up `sub` before its first ack (its deadline passed).
   * @param {Sub} sub @param {Error} err */
  _abandon(sub, err) {
    if (this._subs.get(sub.topic) !== sub) return;
    this._subs.delete(sub.topic);
    // Sent on this socket, the subscribe may still take effect on the server.
    if (this._open && sub.sentOn === this._ws) this._abandoned.add(sub.topic);
    sub.fail(err);
  }

  /** An ack or a message for a topic given up on this socket: the server went on to
   * subscribe it; undo that once rather than leave it live and unread.
   * @param {unknown} topic */
  _stray(topic) {
    if (typeof topic !== "string" || this._subs.has(topic) || !this._abandoned.has(topic)) {
      return;
    }
    this._abandoned.delete(topic);
    this._call({ action: "unsubscribe", topic }).catch(() => {});
  }

  /** @param {string} text */
  _frame(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg === null || typeof msg !== "object") return;
    if (this._silence > 0) this._watch();  // any frame, a "ping" included, is a sign of life
    if (this._heartbeatId !== 0 && msg.id === this._heartbeatId
        && (msg.type === "ack" || msg.type === "error")) {
      this._heartbeatAnswer(msg);
      return;
    }
    const sub = typeof msg.topic === "string" ? this._subs.get(msg.topic) : undefined;
    switch (msg.type) {
      case "message":
        if (sub) sub.deliver(msg);
        else this._stray(msg.topic);
        return;
      case "ack": case "history": case "presence": case "presence_stats":
        this._settle(msg.id, msg, null);
        if (msg.type === "ack") this._stray(msg.topic);
        return;
      case "error":
        if (this._pending.has(msg.id)) {
          this._settle(msg.id, null, new PubsocketError(msg.code, msg.message));
        } else {
          this._emit("error", new PubsocketError(msg.code, msg.message));
        }
        return;
      case "gap":
        sub?.gap(msg.offset, msg.epoch, "gap");
        return;
      case "join": case "leave": {
        const hook = msg.type === "join" ? sub?.options.onJoin : sub?.options.onLeave;
        if (hook) safely(hook, { topic: msg.topic, user: msg.user ?? null,
          info: msg.info ?? null, client: msg.client });
        return;
      }
      case "unsubscribed":
        if (sub) {
          this._subs.delete(msg.topic);
          sub.fail(new PubsocketError("closed", `unsubscribed by the server: ${msg.reason}`));
          if (sub.options.onUnsubscribed) safely(sub.options.onUnsubscribed, msg.reason);
        }
        return;
      case "expiring":
        this._refresh();
        return;
      default:
        return;  // clients must ignore what they do not know
    }
  }

  async _refresh() {
    if (typeof this._token !== "function") return;  // a fixed token cannot be renewed
    try {
      const token = await this._getToken();
      if (this._open) await this._call({ action: "refresh", token });
    } catch (err) {
      // Without a refresh the server closes with 4001 after the grace; the reconnect
      // then asks the token function again.
      this._emit("error", err instanceof PubsocketError ? err
        : new PubsocketError("auth", `token refresh failed: ${errorText(err)}`));
    }
  }
}

/** The pubsocket.v1 HTTP fallback (docs/protocol.md "HTTP fallback"), behind the part
 * of the WebSocket interface the client uses: `send(text)`, `close()`, `onopen`,
 * `onmessage({data})`, `onclose({code, reason})`.
 *
 * `POST <url>?transport=http_stream` opens a session; its response body streams the
 * server's messages, one JSON text per line, the first one naming the session and node.
 * `send` queues commands; they go out in order, one `POST <url>?transport=emulation` at
 * a time, batched (at most MAX_POST_COMMANDS / MAX_POST_BYTES each). Replies come on
 * the stream. Opens on the first line; "closes" (onclose, once) when the stream ends or
 * breaks, a command POST fails, or a bound is passed; `close()` aborts everything and
 * calls nothing. */
class HttpStreamSocket {
  /** @param {string} url the WebSocket URL @param {string | undefined} token */
  constructor(url, token) {
    this.url = url;
    /** @type {(() => void) | null} */
    this.onopen = null;
    /** @type {((event: {data: string}) => void) | null} */
    this.onmessage = null;
    /** @type {((event: {code: number, reason: string, retryAfter: number}) => void) | null} */
    this.onclose = null;
    this._abort = new AbortController();
    this._done = false;
    /** @type {{session: string, node: string} | null} */
    this._target = null;
    /** @type {string[]} */
    this._unsent = [];
    this._unsentBytes = 0;
    this._posting = false;
    /** a close the server announced on the stream, reported when the stream ends
     * @type {{code: number, reason: string} | null} */
    this._announced = null;
    this._run(token).catch(() => this._fail(1006, "stream broken"));
  }

  /** Queue one command (JSON text); it is POSTed after those queued before it. @param {string} text */
  send(text) {
    if (this._done) return;
    this._unsentBytes += text.length;
    if (this._unsentBytes > MAX_UNSENT_BYTES) {
      this._fail(1009, "too many commands waiting to be sent");
      return;
    }
    this._unsent.push(text);
    if (!this._posting && this._target !== null) {
      this._posting = true;
      // Commands sent in the same turn (a resubscribe per topic, queued calls) share a POST.
      queueMicrotask(() => this._post().catch(() => this._fail(1006, "command not sent")));
    }
  }

  /** Abort the stream and any command POST; no onclose follows. */
  close() {
    this._done = true;
    this._abort.abort();
  }

  /** @param {string} transport @returns {string} */
  _endpoint(transport) {
    const url = new URL(this.url);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.searchParams.set("transport", transport);
    return url.href;
  }

  /** @param {string | undefined} token */
  async _run(token) {
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(this._endpoint("http_stream"), { method: "POST", headers,
        body: "[]", cache: "no-store", signal: this._abort.signal });
    } catch {
      this._fail(1006, "cannot connect");
      return;
    }
    if (response.status !== 200 || !response.body) {
      // 401, 403, 429, 503 as the upgrade's refusals (a browser's WebSocket hides them)
      response.body?.cancel().catch(() => {});
      this._fail(1006, `refused: HTTP ${response.status}`, retryAfter(response));
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let partial = "";
    // One read per chunk until the stream ends: the stream's life bounds it, and the
    // client's heartbeat watch closes a stream that goes silent.
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        this._fail(1006, "stream broken");
        return;
      }
      if (this._done) return;
      if (chunk.done) break;
      const lines = (partial + decoder.decode(chunk.value, { stream: true })).split("\n");
      partial = /** @type {string} */ (lines.pop());
      for (const line of lines) {
        if (line) this._line(line);
        if (this._done) return;
      }
      if (partial.length > MAX_STREAM_LINE) {
        this._fail(1009, "a message on the stream is too large");
        return;
      }
    }
    const end = this._announced ?? { code: 1006, reason: "stream ended" };
    this._fail(end.code, end.reason);
  }

  /** @param {string} line */
  _line(line) {
    if (this._target === null) {
      let first;
      try { first = JSON.parse(line); } catch { first = null; }
      if (!first || first.type !== "transport" || typeof first.session !== "string") {
        this._fail(1002, "the stream did not start with its session");
        return;
      }
      this._target = { session: first.session, node: String(first.node ?? "") };
      this.onopen?.();
      return;
    }
    if (line.startsWith('{"type":"close"')) {
      // The close code a WebSocket would have carried, announced before the stream ends.
      try {
        const close = JSON.parse(line);
        if (typeof close.code === "number") {
          this._announced = { code: close.code, reason: String(close.reason ?? "") };
        }
      } catch { /* not a close after all: pass it on */ }
    }
    this.onmessage?.({ data: line });
  }

  /** POST the queued commands in order, one request at a time, until none is left. */
  async _post() {
    const target = /** @type {{session: string, node: string}} */ (this._target);
    // Bounded: every pass takes at least one command off a queue of bounded size.
    while (this._unsent.length > 0 && !this._done) {
      let count = 0;
      let bytes = 0;
      while (count < this._unsent.length && count < MAX_POST_COMMANDS
             && (count === 0 || bytes + this._unsent[count].length <= MAX_POST_BYTES)) {
        bytes += this._unsent[count++].length;
      }
      const batch = this._unsent.splice(0, count);
      this._unsentBytes -= bytes;
      const body = `{"session":${JSON.stringify(target.session)},"node":${
        JSON.stringify(target.node)},"data":[${batch.join(",")}]}`;
      const response = await fetch(this._endpoint("emulation"), { method: "POST",
        headers: { "Content-Type": "application/json" }, body, cache: "no-store",
        signal: this._abort.signal });
      response.body?.cancel().catch(() => {});
      if (this._done) return;
      if (response.ok) continue;
      // What a WebSocket would have been closed with for the same fault. A 400 (the
      // server's command cap may be set below MAX_POST_COMMANDS) is not taken as final:
      // the reconnect's backoff bounds any repeat.
      const [code, reason] = response.status === 404 ? [1006, "unknown session"]
        : response.status === 429 ? [4029, "rate limited"]
        : response.status === 413 ? [1009, "commands too large"]
        : [1006, `commands refused: HTTP ${response.status}`];
      this._fail(code, reason, retryAfter(response));
      return;
    }
    this._posting = false;
  }

  /** @param {number} code @param {string} reason @param {number} [retryAfter] ms */
  _fail(code, reason, retryAfter = 0) {
    if (this._done) return;
    this._done = true;
    this._abort.abort();
    this.onclose?.({ code, reason, retryAfter });
  }
}

/** ms of a 429's `Retry-After` (seconds), else 0. @param {Response} response */
function retryAfter(response) {
  const seconds = response.status === 429 ? Number(response.headers.get("Retry-After")) : 0;
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** The transport this page last saw working for `url`, while remembered.
 * @param {string} url @returns {Transport | null} */
function recallTransport(url) {
  let entry = rememberedTransports.get(url);
  if (!entry) {
    try {
      const stored = globalThis.sessionStorage?.getItem(`pubsocket.transport ${url}`);
      entry = stored ? JSON.parse(stored) : undefined;
    } catch { /* storage blocked: this page's memory only */ }
  }
  if (!entry || !(entry.until > Date.now()) || !TRANSPORTS.includes(entry.transport)) {
    return null;
  }
  return entry.transport;
}

/** @param {string} url @param {Transport} transport */
function rememberTransport(url, transport) {
  if (transport === "websocket") {
    rememberedTransports.delete(url);
    try { globalThis.sessionStorage?.removeItem(`pubsocket.transport ${url}`); } catch { /* */ }
    return;
  }
  // Remembered from when it last began to be used, so WebSocket is tried again after
  // REMEMBER_FALLBACK even on a page that keeps reconnecting over http_stream.
  if (recallTransport(url) === transport) return;
  const entry = { transport, until: Date.now() + REMEMBER_FALLBACK };
  rememberedTransports.set(url, entry);
  try {
    globalThis.sessionStorage?.setItem(`pubsocket.transport ${url}`, JSON.stringify(entry));
  } catch { /* storage blocked or full: this page's memory only */ }
}

/** One subscription: the caller's callbacks and the last position delivered. */
class Sub {
  /** @param {string} topic @param {(data: any, message: Message) => void} onMessage
   * @param {SubscribeOptions} options */
  constructor(topic, onMessage, options) {
    this.topic = topic;
    this.onMessage = onMessage;
    this.options = options;
    /** @type {number | null} */
    this.offset = options.since ? options.since.offset : null;
    /** @type {string | null} */
    this.epoch = options.since ? options.since.epoch : null;
    this.acked = false;
    /** the socket the last subscribe went out on @type {WebSocket | null} */
    this.sentOn = null;
    /** "retry later" answers since the last ack; the last one @type {Error | null} */
    this.retries = 0;
    this.lastError = null;
    this._deadline = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._timer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._retryTimer = null;
    /** @type {(ack: Subscribed) => void} */
    this._resolve = () => {};
    /** @type {(err: Error) => void} */
    this._reject = () => {};
    /** @type {Promise<Subscribed>} */
    this.first = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.first.catch(() => {});  // callers that ignore the promise get no unhandled rejection
  }

  /** Give up after `ms` unless the first ack came by then, across reconnects and retries.
   * @param {number} ms @param {(err: Error) => void} onTimeout */
  armTimeout(ms, onTimeout) {
    this._deadline = Date.now() + ms;
    this._timer = setTimeout(() => {
      if (this.acked) return;
      const last = this.lastError;
      onTimeout(last instanceof PubsocketError
        ? new PubsocketError(last.code, `${last.message} (retried for ${ms} ms)`)
        : new PubsocketError("timeout", `no reply to subscribe within ${ms} ms`));
    }, ms);
  }

  /** ms left until the first-ack deadline (at least 1). */
  remaining() {
    return Math.max(1, this._deadline - Date.now());
  }

  /** @param {number} ms @param {() => void} fn */
  retryLater(ms, fn) {
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => { this._retryTimer = null; fn(); }, ms);
  }

  /** @returns {{offset: number, epoch: string} | null} */
  position() {
    return this.offset !== null && this.epoch ? { offset: this.offset, epoch: this.epoch } : null;
  }

  /** @param {any} ack @param {boolean} resumed @returns {boolean | null} */
  acknowledged(ack, resumed) {
    const recovered = resumed ? ack.recovered === true : null;
    if (resumed && !recovered) {
      // Nothing old is replayed: live delivery continues after the ack's position.
      this.offset = ack.offset ?? null;
      this.epoch = ack.epoch ?? null;
      this.gap(ack.offset, ack.epoch, "not_recovered");
    } else if (!resumed) {
      this.offset = ack.offset ?? null;
      this.epoch = ack.epoch ?? null;
    }
    /** @type {Subscribed} */
    const info = { topic: this.topic, offset: ack.offset, epoch: ack.epoch,
      resubscribed: this.acked };
    if (recovered !== null) info.recovered = recovered;
    const first = !this.acked;
    this.acked = true;
    this.retries = 0;
    this.lastError = null;
    if (this._timer !== null) clearTimeout(this._timer);
    if (first) this._resolve(info);
    if (this.options.onSubscribed) safely(this.options.onSubscribed, info);
    return recovered;
  }

  /** @param {any} msg */
  deliver(msg) {
    if (typeof msg.offset === "number") {
      // Replays after a resubscribe can overlap what was already delivered: at most once
      // per offset within the epoch.
      if (this.offset !== null && msg.offset <= this.offset) return;
      this.offset = msg.offset;
    }
    safely(this.onMessage, msg.data, msg);
  }

  /** @param {number} offset @param {string} epoch @param {"gap" | "not_recovered"} reason */
  gap(offset, epoch, reason) {
    if (reason === "gap") {
      this.offset = offset;
      this.epoch = epoch;
    }
    if (this.options.onGap) safely(this.options.onGap, { topic: this.topic, offset, epoch, reason });
  }

  /** @param {Error} err */
  fail(err) {
    if (this._timer !== null) clearTimeout(this._timer);
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    if (!this.acked) this._reject(err);
  }
}

/** @param {string} [detail] */
function closedError(detail) {
  return new PubsocketError("closed", detail ? `client closed: ${detail}` : "client closed");
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

/** Run a caller's callback; its exception must not break the client's state.
 * @param {Function} fn @param {...unknown} args */
function safely(fn, ...args) {
  try { fn(...args); } catch (err) { reportLater(err); }
}

/** @param {unknown} err */
function reportLater(err) {
  setTimeout(() => { throw err; }, 0);  // surfaces in the console as an uncaught error
}
