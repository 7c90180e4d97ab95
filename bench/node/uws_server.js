'use strict';
// uWebSockets (uWS.js v20, C++; npm package `uwebsockets`) baseline for the pubsocket
// benchmark suite: the same seed protocol as server.js on /ws/chat, delivered with
// uWS's own pub/sub (ws.subscribe / app.publish), its fastest fan-out: one topic
// tree, per-subscriber buffering drained once per event-loop iteration (corked).
//   {"action":"subscribe","topic":T} / {"action":"unsubscribe","topic":T}
//   {"action":"publish","topic":T,"data":<any JSON>}
// Every subscriber of T receives a text frame containing exactly JSON.stringify(data).
const uWS = require('uwebsockets');

const port = Number.parseInt(process.env.PORT || '8080', 10);
const host = process.env.HOST || '127.0.0.1';
const decoder = new TextDecoder();

const app = uWS.App();
app.ws('/ws/chat', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024 * 1024,
  // as much room per subscriber as pubsocket's outbound budget before it gives up
  maxBackpressure: 1024 * 1024,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  message: (ws, message, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(decoder.decode(message));
    } catch (_) {
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    const topic = msg.topic;
    if (typeof topic !== 'string') return;
    switch (msg.action) {
      case 'subscribe':
        ws.subscribe(topic);
        break;
      case 'unsubscribe':
        ws.unsubscribe(topic);
        break;
      case 'publish':
        app.publish(topic, JSON.stringify(msg.data === undefined ? null : msg.data), false);
        break;
      default:
        break;
    }
  },
});
app.get('/health', (res) => {
  res.end('ok');
});
app.listen(host, port, (token) => {
  if (!token) {
    process.stderr.write(`uws: cannot listen on ${host}:${port}\n`);
    process.exit(1);
  }
  process.stdout.write(`uws listening on ${host}:${port}\n`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
