// The load generator of `npm run bench:serve`, run as a separate process so that it does not share the server's
// event loop: autocannon POSTs one fundus photograph to /v1/predict from `connections` keep-alive connections for
// `duration` seconds; every response time is kept, so that p50/p95 are exact rather than read off a histogram.
// Prints one JSON line. Usage: tsx benchmarks/serve-load.ts <url> <image> <connections> <duration-s>
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';

const [url, image, connections, duration] = process.argv.slice(2);
const body = readFileSync(image);
const times: number[] = [];
let non2xx = 0;
let busy = 0; // 503: no free slot
const instance = autocannon({
  url,
  method: 'POST',
  headers: { 'content-type': 'image/jpeg' },
  body,
  connections: Number(connections),
  duration: Number(duration),
});
instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
  if (status >= 200 && status < 300) times.push(ms);
  else {
    non2xx++;
    if (status === 503) busy++;
  }
});
const result = await instance;
times.sort((a, b) => a - b);
const pct = (p: number) => (times.length ? times[Math.min(times.length - 1, Math.floor(p * times.length))] : NaN);
console.log(
  JSON.stringify({
    requests: times.length,
    seconds: result.duration,
    rps: times.length / result.duration,
    p50: pct(0.5),
    p95: pct(0.95),
    p99: pct(0.99),
    non2xx,
    status503: busy,
    errors: result.errors,
    timeouts: result.timeouts,
  }),
);
