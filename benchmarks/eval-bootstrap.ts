// Bootstrap confidence intervals of the evaluation (7 classes × AUC, AP, F1, sensitivity, specificity, precision,
// F1@0.5, plus the averages) against the usual scikit-learn loop on the same labels and probabilities.
// Run: npm run bench:eval -- [--n 700] [--resamples 1000] [--peer-resamples 100]
// (peer: /usr/bin/python3 benchmarks/eval_bootstrap_peer.py, scikit-learn 1.2.1)
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seededRandom } from '../src/data/random.js';
import { evaluatePredictions } from '../src/eval/evaluate.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const n = arg('n', 700); // about the size of the VietAI test part
const resamples = arg('resamples', 1000);
const peerResamples = arg('peer-resamples', 100);
const prevalence = [0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.3];
const C = prevalence.length;

const rng = seededRandom(11);
const labels = new Uint8Array(n * C);
const probs = new Float32Array(n * C);
for (let i = 0; i < n * C; i++) {
  labels[i] = rng() < prevalence[i % C] ? 1 : 0;
  probs[i] = Math.min(1, Math.max(0, 0.25 + 0.4 * labels[i] + (rng() - 0.5) * 0.7));
}
const thresholds = new Array(C).fill(0.45);
const classes = prevalence.map((_, k) => `c${k}`);

evaluatePredictions({ classes, activation: 'sigmoid', probs, labels, thresholds, bootstrap: { resamples: 20 } }); // warm-up
const t0 = performance.now();
evaluatePredictions({ classes, activation: 'sigmoid', probs, labels, thresholds, bootstrap: { resamples } });
const ours = (performance.now() - t0) / 1000;

const dir = await mkdtemp(join(tmpdir(), 'fundus-bench-'));
try {
  const input = join(dir, 'input.json');
  await writeFile(input, JSON.stringify({ n, classes: C, resamples: peerResamples, thresholds, labels: Array.from(labels), probs: Array.from(probs) }));
  const r = spawnSync('/usr/bin/python3', [join(import.meta.dirname, 'eval_bootstrap_peer.py'), input], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`peer failed: ${r.stderr}`);
  const peer = JSON.parse(r.stdout) as { seconds: number; resamples: number };
  const oursPer = ours / resamples;
  const peerPer = peer.seconds / peer.resamples;
  console.log(`n=${n} images × ${C} classes, stratified bootstrap`);
  console.log(`fundus (TypeScript): ${resamples} resamples in ${ours.toFixed(2)} s  (${(oursPer * 1000).toFixed(2)} ms/resample)`);
  console.log(`scikit-learn loop  : ${peer.resamples} resamples in ${peer.seconds.toFixed(2)} s  (${(peerPer * 1000).toFixed(2)} ms/resample)`);
  console.log(`ratio: fundus is ${(peerPer / oursPer).toFixed(1)}x faster per resample`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
