// How many confident pseudo-labels label spreading gives on the real embeddings, per kernel and gamma (no training):
// the diagnostic behind the choice of gamma. Usage:
//   npx tsx benchmarks/selflearn-rbf-gamma.ts <model-dir> [split.json]   (data: ../shared/data/vietai)
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readDataset } from '../src/data/csv.js';
import { initEngine } from '../src/engine/index.js';
import { loadModel } from '../src/models/io.js';
import { embedFiles } from '../src/selflearn/embed.js';
import { l2Normalize, medianHeuristicGamma, selectConfident, spreadingScores } from '../src/selflearn/pseudolabel.js';
import { readSplitParts } from '../src/data/split.js';

const [modelDir, splitPath = 'splits/vietai.json'] = process.argv.slice(2);
const DATA = '../shared/data/vietai';
await initEngine();
const model = await loadModel(modelDir);
const dataset = await readDataset(join(DATA, 'train.csv'), join(DATA, 'train'));
const split = await readSplitParts(splitPath);
const byName = new Map(dataset.images.map((im) => [im.filename, im]));
const train = split.train.map((n) => byName.get(n)!);
const unl = (await readdir(join(DATA, 'unlabeled'))).sort().map((n) => join(DATA, 'unlabeled', n));
const C = model.metadata.classes.length;
const idx = model.metadata.classes.map((c) => dataset.classes.indexOf(c));
const labelled = new Uint8Array(train.length * C);
train.forEach((t, i) => idx.forEach((k, c) => (labelled[i * C + c] = t.labels![k])));
const emb = await embedFiles(model, [...train.map((t) => t.path), ...unl], { progressLabel: 'embed' });
const h = medianHeuristicGamma(l2Normalize(emb.matrix));
console.log(`${emb.matrix.rows} points x ${emb.matrix.cols} dims (layer ${emb.layer}); median-heuristic gamma ${h.toPrecision(4)}`);
const runs: [string, Parameters<typeof spreadingScores>[5]][] = [
  ['knn k=7', { kind: 'spreading', kernel: 'knn', normalize: 'l2', params: { nNeighbors: 7 } }],
  ['knn k=15', { kind: 'spreading', kernel: 'knn', normalize: 'l2', params: { nNeighbors: 15 } }],
  ...[1, 3, 10, 30, 100].map((f): [string, Parameters<typeof spreadingScores>[5]] => [
    `rbf gamma=${f}x median (${(f * h).toPrecision(4)})`,
    { kind: 'spreading', kernel: 'rbf', normalize: 'l2', params: { gamma: f * h } },
  ]),
];
for (const [name, method] of runs) {
  const s = spreadingScores(emb.matrix, labelled, train.length, C, model.metadata.activation, method);
  const counts = [0.9, 0.8, 0.7].map((t) => `${selectConfident(s, t).length}@${t}`);
  console.log(`${name}: accepted of ${unl.length}: ${counts.join(', ')}`);
}
