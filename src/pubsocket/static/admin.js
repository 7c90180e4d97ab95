// The ops page: polls <base>/stats once a second with the API key from sessionStorage.
// Every value is written with textContent (topic names and log messages are data).
"use strict";
(function () {
  const BASE = document.body.dataset.base; // the page's own path, e.g. /rt/admin
  const ROOT = document.body.dataset.root; // where the app is mounted ("" at the root)
  const KEY = "pubsocket.admin.key";
  const PERIOD_MS = 1000;
  const REQUEST_TIMEOUT_MS = 5000;
  const MAX_FAILURES = 30; // then stop polling until the user opens the page again
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let failures = 0;
  let previous = null; // {uptime, deliveries} of the last sample, for deliveries/s

  const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const bytes = (n) => {
    if (typeof n !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  };
  const duration = (s) => {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    const m = Math.floor(s % 3600 / 60), sec = s % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + sec + "s";
  };
  const set = (id, text) => { $(id).textContent = text; };

  function status(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind || "";
  }

  function withTimeout(url, options) {
    const ctrl = new AbortController();
    const t = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
    return fetch(url, { ...options, signal: ctrl.signal, cache: "no-store" })
      .finally(() => clearTimeout(t));
  }

  function signedIn(on) {
    $("login").hidden = on;
    $("dashboard").hidden = !on;
    $("signout").hidden = !on;
  }

  function stop(message, kind) {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    status(message, kind);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    previous = null;
    signedIn(false);
    stop(message || "signed out", message ? "bad" : "");
    $("key").focus();
  }

  async function poll() {
    timer = null;
    const key = sessionStorage.getItem(KEY);
    if (!key) { signOut(); return; }
    let reply;
    try {
      reply = await withTimeout(BASE + "/stats", { headers: { Authorization: "Bearer " + key } });
    } catch (err) {
      return retry("server unreachable");
    }
    if (reply.status === 401) { signOut("the API key was refused (401)"); return; }
    if (reply.status === 403) { signOut("that token is not the API key (403)"); return; }
    if (!reply.ok) return retry("stats failed: HTTP " + reply.status);
    let stats;
    try { stats = await reply.json(); } catch (err) { return retry("stats were not JSON"); }
    failures = 0;
    render(stats);
    status("live · " + new Date().toLocaleTimeString(), "ok");
    timer = setTimeout(poll, PERIOD_MS);
  }

  function retry(message) {
    failures += 1;
    if (failures >= MAX_FAILURES) {
      stop(message + " · stopped after " + failures + " tries; reload to retry", "bad");
      return;
    }
    status(message + " · retrying", "bad");
    timer = setTimeout(poll, PERIOD_MS);
  }

  function render(s) {
    const c = s.counters || {};
    const t = s.transport || {};
    const b = s.broker || {};
    set("connections", fmt(s.connections));
    set("subscriptions", fmt(s.subscriptions));
    set("topics", fmt(s.topics.count));
    set("published", fmt(c.published));
    set("slow", fmt(t.slow_consumer_closes));
    if (previous && s.uptime_seconds > previous.uptime && c.deliveries >= previous.deliveries) {
      const rate = (c.deliveries - previous.deliveries) / (s.uptime_seconds - previous.uptime);
      set("rate", rate < 10 ? rate.toFixed(1) : fmt(Math.round(rate)));
    }
    previous = { uptime: s.uptime_seconds, deliveries: c.deliveries };

    set("broker-kind", b.kind);
    const health = $("broker-health");
    health.textContent = b.healthy ? "healthy" : "unhealthy";
    health.className = "badge " + (b.healthy ? "ok" : "bad");
    set("broker-reconnects", fmt(b.reconnects));
    set("broker-restarts", fmt(b.reader_restarts));
    set("broker-errors", fmt(b.publish_errors));
    set("broker-latency", b.publish_latency_seconds
      ? (b.publish_latency_seconds * 1000).toFixed(2) + " ms" : "–");
    set("presence", s.presence.enabled
      ? "on (" + s.presence.patterns.join(", ") + ")" + (s.presence.events ? ", join/leave events" : "")
      : "off");
    set("uptime", duration(s.uptime_seconds));
    set("node", s.node.host + " · pid " + s.node.pid);
    set("messages", fmt(t.messages_in) + " / " + fmt(t.messages_out));
    set("bytes", bytes(t.bytes_in) + " / " + bytes(t.bytes_out));
    set("deliveries", fmt(c.deliveries) + " / " + fmt(c.broker_received));
    set("stream", fmt(c.gaps) + " / " + fmt(c.recoveries) + " / " + fmt(c.duplicates_dropped));

    const rows = s.topics.top.map((entry) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = entry.topic;
      const count = document.createElement("td");
      count.className = "num";
      count.textContent = fmt(entry.subscribers);
      tr.append(name, count);
      return tr;
    });
    $("topic-rows").replaceChildren(...rows);
    $("no-topics").hidden = rows.length > 0;

    const items = s.recent_errors.slice().reverse().map((r) => {
      const li = document.createElement("li");
      li.className = r.level === "WARNING" ? "warn" : "err";
      const head = document.createElement("span");
      head.className = "meta";
      head.textContent = new Date(r.time * 1000).toLocaleTimeString() + " " + r.level + " " + r.logger;
      const msg = document.createElement("span");
      msg.textContent = r.message;
      li.append(head, msg);
      return li;
    });
    $("errors").replaceChildren(...items);
    $("no-errors").hidden = items.length > 0;
  }

  async function publish(event) {
    event.preventDefault();
    const out = $("publish-result");
    out.className = "";
    let data;
    try { data = JSON.parse($("data").value); } catch (err) {
      out.textContent = "data is not valid JSON";
      out.className = "bad";
      return;
    }
    out.textContent = "publishing…";
    try {
      const reply = await withTimeout(ROOT + "/api/publish", {
        method: "POST",
        headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY),
                   "Content-Type": "application/json" },
        body: JSON.stringify({ topic: $("topic").value, data: data }),
      });
      let body = null;
      try { body = await reply.json(); } catch (err) { /* shown as the status below */ }
      if (reply.ok) {
        out.textContent = "published" + (body && body.offset ? " at offset " + body.offset : "");
        out.className = "ok";
      } else {
        out.textContent = "refused (" + reply.status + "): " + (body && body.message ? body.message : "no details");
        out.className = "bad";
      }
    } catch (err) {
      out.textContent = "publish failed: server unreachable";
      out.className = "bad";
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("key").value = "";
    failures = 0;
    signedIn(true);
    status("connecting…");
    if (timer !== null) clearTimeout(timer);
    poll();
  });
  $("signout").addEventListener("click", () => signOut());
  $("publish").addEventListener("submit", publish);

  if (sessionStorage.getItem(KEY)) { signedIn(true); poll(); } else { signedIn(false); }
})();
