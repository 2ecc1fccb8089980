// Label spreading speed against scikit-learn 1.2.1 on the same synthetic embeddings (Gaussian blobs, 5% labelled).
// Run: npm run bench:selflearn [-- --n 20000 --dim 128]   (peer: /usr/bin/python3 benchmarks/selflearn_peer.py)
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/index.js';
import { seededRandom } from '../src/data/random.js';
import { LabelSpreading } from '../src/selflearn/spreading.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const n = arg('n', 20000);
const dim = arg('dim', 128);
const classes = 5;

const engine = await initEngine();
const rng = seededRandom(7);
const gauss = () => Math.sqrt(-2 * Math.log(rng() || 1e-12)) * Math.cos(2 * Math.PI * rng());
const centres = Array.from({ length: classes }, () => Array.from({ length: dim }, () => gauss() * 0.6));
const x = new Float32Array(n * dim);
const y = new Int32Array(n).fill(-1);
for (let i = 0; i < n; i++) {
  const c = Math.floor(rng() * classes);
  for (let j = 0; j < dim; j++) x[i * dim + j] = centres[c][j] + gauss();
  if (rng() < 0.05) y[i] = c;
}

const dir = await mkdtemp(join(tmpdir(), 'fundus-bench-'));
try {
  await writeFile(join(dir, 'x.f32'), new Uint8Array(x.buffer));
  await writeFile(join(dir, 'y.i32'), new Uint8Array(y.buffer));
  const peer = spawnSync(
    '/usr/bin/python3',
    ['benchmarks/selflearn_peer.py', join(dir, 'x.f32'), String(n), String(dim), join(dir, 'y.i32'), join(dir, 'peer.json')],
    { stdio: 'inherit' },
  );
  if (peer.status !== 0) throw new Error('the scikit-learn peer failed');
  const ref = JSON.parse(await readFile(join(dir, 'peer.json'), 'utf8')) as Record<string, { seconds: number; n: number; transduction: number[]; nIter: number }>;

  console.log(`label spreading, ${n} points x ${dim} dims, ${classes} classes, backend ${engine.backend}`);
  for (const [kernel, params] of [
    ['knn', { kernel: 'knn', nNeighbors: 7 }],
    ['rbf', { kernel: 'rbf', gamma: 0.05 }],
  ] as const) {
    const m = ref[kernel].n;
    const t0 = performance.now();
    const model = new LabelSpreading({ alpha: 0.2, ...params }).fit({ data: x.subarray(0, m * dim), rows: m, cols: dim }, y.subarray(0, m));
    const seconds = (performance.now() - t0) / 1000;
    let same = 0;
    for (let i = 0; i < m; i++) if (model.transduction[i] === ref[kernel].transduction[i]) same++;
    console.log(
      `${kernel}: n=${m} fundus ${seconds.toFixed(2)} s, scikit-learn ${ref[kernel].seconds.toFixed(2)} s, ` +
        `ratio fundus/sklearn ${(seconds / ref[kernel].seconds).toFixed(2)}; transduction identical on ${same}/${m}; ` +
        `n_iter ${model.nIter} vs ${ref[kernel].nIter}`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
