// centrifuge-js (the official SDK, from npm) driven by pytest, one client per process.
//
//   node tests/js/centrifuge_scenarios.mjs <scenario> <url> <json-args>
//
// Scenarios: "client" (one Centrifuge client, driven by commands) and "batch" (the
// same, with startBatching() from the start until the first `connect`).
// json-args: {token?, getToken?: bool, minReconnectDelay?, maxReconnectDelay?, timeout?,
// protobuf?: bool}. With protobuf the SDK's protobuf build runs (subprotocol
// centrifuge-protobuf): data goes out as the UTF-8 bytes of its JSON (or of `raw`, a
// publish's string sent as it is) and arrives as bytes, shown parsed from JSON (or as
// {"undecodable": <text>}), so events read the same in both modes.
// transports?: [{transport, endpoint}] makes the SDK use that list instead of the url
// (Centrifugo's bidirectional emulation: "http_stream", "sse"; the url is then unused),
// with emulationEndpoint? (default: /emulation on the url's origin) and Node's
// `eventsource` package as the SSE transport's EventSource.
//
// stdout: one JSON object per line, {"ev": <name>, "t": <ms since start>, ...ctx}, for
// every client and subscription event (a server-side subscription's as "server_subscribed",
// "server_subscribing", "server_unsubscribed", "server_publication", with its channel)
// and for every command result; nothing else
// (the SDK's debug log goes to stderr). stdin: one JSON command per line:
//   {"op":"connect"} {"op":"disconnect"} {"op":"exit"}
//   {"op":"sub","channel":C,"opts":{recoverable,positioned,joinLeave,since,token,getToken:bool,
//                                   kind?: "map"|"map_clients"|"map_users"|"shared_poll"}}
//   {"op":"unsub","channel":C} {"op":"publish","channel":C,"data":D,"id":I}
//   {"op":"presence"|"presence_stats"|"history","channel":C,"id":I}
//   {"op":"batch","ops":[cmd, ...]}     those commands between startBatching/stopBatching
//   {"op":"token","token":T}            answers the oldest pending connection getToken
//   {"op":"sub_token","channel":C,"token":T}  answers that channel's pending getToken
//   {"op":"state","channel":C,"offset":N,"epoch":E}  answers its pending getState
//     (sub opts getState: bool; {"op":"state","channel":C,"fail":true} rejects it)
// getToken/getState callbacks print {"ev":"get_token"} / {"ev":"get_sub_token","channel":C}
// / {"ev":"get_state","channel":C} and wait for the answer, so the test decides what the
// SDK gets and when.
// The process exits 0 on {"op":"exit"} or stdin EOF, 2 on bad usage, 3 on a bad command.

import * as jsonBuild from 'centrifuge';
import WebSocket from 'ws';
import EventSource from 'eventsource';
import { createInterface } from 'node:readline';

const t0 = Date.now();
const emit = (ev, fields = {}) => {
  process.stdout.write(JSON.stringify({ ev, t: Date.now() - t0, ...fields }) + '\n');
};
console.log = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');
console.debug = console.log;

const [scenario, url, rawArgs] = process.argv.slice(2);
if (!['client', 'batch'].includes(scenario) || !url) {
  process.stderr.write('usage: centrifuge_scenarios.mjs client|batch <url> <json-args>\n');
  process.exit(2);
}
const args = JSON.parse(rawArgs || '{}');
const { Centrifuge } = args.protobuf ? await import('centrifuge/build/protobuf') : jsonBuild;
const encode = (data) => (args.protobuf ? new TextEncoder().encode(JSON.stringify(data)) : data);
const decode = (data) => {
  if (!args.protobuf || data === undefined) return data;
  const text = new TextDecoder().decode(data);
  try {
    return JSON.parse(text);
  } catch {
    return { undecodable: text };
  }
};

const tokenWaiters = [];
const subTokenWaiters = new Map();
const stateWaiters = new Map();
const options = {
  websocket: WebSocket,
  minReconnectDelay: args.minReconnectDelay ?? 50,
  maxReconnectDelay: args.maxReconnectDelay ?? 300,
  timeout: args.timeout ?? 3000,
  debug: Boolean(args.debug),
};
if (args.token) options.token = args.token;
if (args.getToken) {
  options.getToken = () => new Promise((resolve) => {
    tokenWaiters.push(resolve);
    emit('get_token');
  });
}
let endpoint = url;
if (args.transports) {
  endpoint = args.transports;
  options.eventsource = EventSource;
  options.emulationEndpoint = args.emulationEndpoint
    ?? new URL('/emulation', args.transports[0].endpoint).toString();
}
const client = new Centrifuge(endpoint, options);

client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit('connected', { client: ctx.client, transport: ctx.transport }));
client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => emit('error', {
  type: ctx.type, code: ctx.error?.code, message: ctx.error?.message,
}));
// Server-side subscriptions (the connect reply's subs, a subscribe push): the client's
// own subscribed / subscribing / unsubscribed / publication events, with the channel.
client.on('publication', (ctx) => emit('server_publication', {
  channel: ctx.channel, data: decode(ctx.data), offset: ctx.offset ?? null,
}));
client.on('subscribed', (ctx) => emit('server_subscribed', {
  channel: ctx.channel,
  recoverable: ctx.recoverable,
  positioned: ctx.positioned,
  wasRecovering: ctx.wasRecovering,
  recovered: ctx.recovered,
  streamPosition: ctx.streamPosition ?? null,
}));
client.on('subscribing', (ctx) => emit('server_subscribing', { channel: ctx.channel }));
client.on('unsubscribed', (ctx) => emit('server_unsubscribed', { channel: ctx.channel }));

const errFields = (e) => ({ code: e?.code, message: e?.message ?? String(e) });

function subscribe(channel, opts = {}) {
  const subOpts = { ...opts };
  delete subOpts.getToken;
  delete subOpts.getState;
  if (opts.getState) {
    subOpts.getState = () => new Promise((resolve, reject) => {
      stateWaiters.set(channel, { resolve, reject });
      emit('get_state', { channel });
    });
  }
  if (opts.getToken) {
    subOpts.getToken = () => new Promise((resolve) => {
      subTokenWaiters.set(channel, resolve);
      emit('get_sub_token', { channel });
    });
  }
  // opts.kind: "map", "map_clients", "map_users" or "shared_poll" makes that kind of
  // subscription (the SDK sends its SubscribeRequest.type); default: a stream.
  delete subOpts.kind;
  const make = {
    map: 'newMapSubscription',
    map_clients: 'newMapClientsSubscription',
    map_users: 'newMapUsersSubscription',
    shared_poll: 'newSharedPollSubscription',
  }[opts.kind] ?? 'newSubscription';
  const sub = client.getSubscription(channel) ?? client[make](channel, subOpts);
  if (!sub._pubsocketWired) {
    sub._pubsocketWired = true;
    sub.on('subscribing', (ctx) => emit('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
    sub.on('subscribed', (ctx) => emit('subscribed', {
      channel,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      hasRecoveredPublications: ctx.hasRecoveredPublications,
      streamPosition: ctx.streamPosition ?? null,
    }));
    sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
    sub.on('publication', (ctx) => emit('publication', {
      channel, data: decode(ctx.data), offset: ctx.offset ?? null, info: ctx.info ?? null,
    }));
    sub.on('join', (ctx) => emit('join', { channel, user: ctx.info?.user, client: ctx.info?.client }));
    sub.on('leave', (ctx) => emit('leave', { channel, user: ctx.info?.user, client: ctx.info?.client }));
    sub.on('error', (ctx) => emit('sub_error', { channel, type: ctx.type, ...errFields(ctx.error) }));
  }
  sub.subscribe();
}

async function request(cmd) {
  const sub = client.getSubscription(cmd.channel);
  switch (cmd.op) {
    case 'publish':
    {
      const data = cmd.raw !== undefined ? new TextEncoder().encode(cmd.raw) : encode(cmd.data);
      return sub ? sub.publish(data) : client.publish(cmd.channel, data);
    }
    case 'presence': {
      const r = await (sub ? sub.presence() : client.presence(cmd.channel));
      const users = Object.values(r.clients).map((c) => c.user).sort();
      return { clients: Object.keys(r.clients).length, users };
    }
    case 'presence_stats':
      return sub ? sub.presenceStats() : client.presenceStats(cmd.channel);
    case 'history': {
      const r = await (sub ? sub.history({ limit: cmd.limit ?? 100 })
        : client.history(cmd.channel, { limit: cmd.limit ?? 100 }));
      return { offset: r.offset, epoch: r.epoch, offsets: r.publications.map((p) => p.offset) };
    }
    default:
      throw new Error(`unknown request ${cmd.op}`);
  }
}

let batching = scenario === 'batch';
if (batching) client.startBatching();

function handle(cmd) {
  switch (cmd.op) {
    case 'connect':
      client.connect();
      if (batching) {
        batching = false;
        client.stopBatching();
      }
      return;
    case 'disconnect':
      client.disconnect();
      return;
    case 'sub':
      subscribe(cmd.channel, cmd.opts);
      return;
    case 'unsub':
      client.getSubscription(cmd.channel)?.unsubscribe();
      return;
    case 'token':
      tokenWaiters.shift()?.(cmd.token);
      return;
    case 'sub_token': {
      const resolve = subTokenWaiters.get(cmd.channel);
      subTokenWaiters.delete(cmd.channel);
      resolve?.(cmd.token);
      return;
    }
    case 'state': {
      const waiter = stateWaiters.get(cmd.channel);
      stateWaiters.delete(cmd.channel);
      if (cmd.fail) waiter?.reject(new Error('state unavailable'));
      else waiter?.resolve({ offset: cmd.offset, epoch: cmd.epoch });
      return;
    }
    case 'batch': // the commands of cmd.ops go out in one frame
      client.startBatching();
      cmd.ops.forEach(handle);
      client.stopBatching();
      return;
    case 'exit':
      finish(0);
      return;
    default:
      request(cmd).then(
        (value) => emit('result', { id: cmd.id, op: cmd.op, ok: true, value: value ?? null }),
        (e) => emit('result', { id: cmd.id, op: cmd.op, ok: false, ...errFields(e) }),
      );
  }
}

function finish(code) {
  client.disconnect();
  // let the close frame go out, then leave even if a timer of the SDK is pending
  setTimeout(() => process.exit(code), 50);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    process.stderr.write(`bad command line: ${line}\n`);
    finish(3);
    return;
  }
  handle(cmd);
});
rl.on('close', () => finish(0));
emit('ready', { scenario });
