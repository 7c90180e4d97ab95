// /pubsocket.js under Node (tests/client/test_pubsocket_js_node.py): connect, subscribe,
// publish, wait for the delivery, print what the client saw as one JSON line.
//   node pubsocket_node.mjs <path of pubsocket.js> <ws url> <token> [ws]
// With "ws" the `ws` package is the client's WebSocket; without, Node 20 has none and the
// client can only use its HTTP transport (fetch + a streamed body).
import { pathToFileURL } from "node:url";

const [, , lib, url, token, withWs] = process.argv;
const ps = await import(pathToFileURL(lib).href);
const options = { token, timeout: 5000 };
if (withWs === "ws") options.WebSocket = (await import("ws")).WebSocket;
const client = ps.connect(url, options);
const out = { states: [], got: [] };
client.on("state", (e) => out.states.push(e));
const started = performance.now();
await client.subscribe("chat:node", (data, m) => out.got.push([data, m.offset]));
out.connectedMs = performance.now() - started;
out.ack = await client.publish("chat:node", "hello from node");
for (let i = 0; i < 250 && out.got.length < 1; i++) {  // bounded: 250 x 20 ms
  await new Promise((resolve) => setTimeout(resolve, 20));
}
out.transport = client.transport;
client.close();
console.log(JSON.stringify(out));
