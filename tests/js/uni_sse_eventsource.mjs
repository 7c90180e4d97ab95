// Node's `eventsource` 2.x on /connection/uni_sse: prints every message event as one
// JSON line {data, id} on stdout, until stdin closes. Usage: node uni_sse_eventsource.mjs URL
import EventSource from 'eventsource';

const es = new EventSource(process.argv[2]);
es.onmessage = (e) => {
  process.stdout.write(JSON.stringify({data: JSON.parse(e.data), id: e.lastEventId}) + '\n');
};
es.onerror = () => process.stdout.write(JSON.stringify({error: true}) + '\n');
process.stdin.on('end', () => { es.close(); process.exit(0); });
process.stdin.resume();
