'use strict';
// Node `ws` baseline for the pubsocket benchmark suite.
// Seed protocol on /ws/chat: JSON text frames
//   {"action":"subscribe","topic":T} / {"action":"unsubscribe","topic":T}
//   {"action":"publish","topic":T,"data":<any JSON>}
// Every subscriber of T (publisher included, if subscribed) receives a text
// frame containing exactly JSON.stringify(data). No acks.
const http = require('http');
const { WebSocketServer } = require('ws');

// Fail loudly if the native mask/unmask addon is missing: the baseline must be
// the fast configuration of ws, not the pure-JS fallback.
require('bufferutil');

const port = Number.parseInt(process.env.PORT || '8080', 10);
const host = process.env.HOST || '127.0.0.1';

const topics = new Map(); // topic -> Set<WebSocket>

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
    return;
  }
  res.writeHead(404);
  res.end();
});

const wss = new WebSocketServer({
  server,
  path: '/ws/chat',
  maxPayload: 1024 * 1024,
  perMessageDeflate: false,
  clientTracking: false,
});

function unsubscribe(ws, topic) {
  const subs = topics.get(topic);
  if (subs === undefined) return;
  subs.delete(ws);
  if (subs.size === 0) topics.delete(topic);
  ws.topics.delete(topic);
}

wss.on('connection', (ws) => {
  ws.topics = new Set();
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    const topic = msg.topic;
    if (typeof topic !== 'string') return;
    switch (msg.action) {
      case 'subscribe': {
        let subs = topics.get(topic);
        if (subs === undefined) {
          subs = new Set();
          topics.set(topic, subs);
        }
        subs.add(ws);
        ws.topics.add(topic);
        break;
      }
      case 'unsubscribe':
        unsubscribe(ws, topic);
        break;
      case 'publish': {
        const subs = topics.get(topic);
        if (subs === undefined) return;
        const payload = JSON.stringify(msg.data === undefined ? null : msg.data);
        for (const c of subs) c.send(payload);
        break;
      }
      default:
        break;
    }
  });
  ws.on('close', () => {
    for (const topic of Array.from(ws.topics)) unsubscribe(ws, topic);
  });
  ws.on('error', () => {});
});

server.listen(port, host, 1024, () => {
  process.stdout.write(`node-ws listening on ${host}:${port}\n`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
