import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { buildNetwork } from '../../src/models/architectures.js';
import type { FundusModel } from '../../src/models/io.js';
import { CamExplainer, type CamInput } from '../../src/explain/cam.js';
import { explainerFor, layerNames } from '../../src/explain/explainer.js';
import { FusedExplainer, fuseHeatmaps } from '../../src/explain/fusion.js';
import { findTargetLayer } from '../../src/models/graph.js';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `at ${i}: ${a[i]} vs ${b[i]}`);
};

test('fuseHeatmaps: each map tanh(2·M/max M), the element-wise maximum; an empty map adds nothing', () => {
  const t1 = Math.tanh(1);
  const t2 = Math.tanh(2);
  const a = { width: 2, height: 2, data: Float32Array.from([0, 2, 4, 0]) };
  const b = { width: 2, height: 2, data: Float32Array.from([1, 1, 0, 0]) };
  const empty = { width: 2, height: 2, data: new Float32Array(4) };
  const f = fuseHeatmaps([a, b, empty]);
  assert.deepEqual([f.width, f.height], [2, 2]);
  close(f.data, [t2, t2, t2, 0]);
  close(fuseHeatmaps([a]).data, [0, t1, t2, 0]);
  // A coarser map is upsampled to the finest grid: a 1x1 map is the same everywhere.
  const coarse = { width: 1, height: 1, data: Float32Array.from([3]) };
  const g = fuseHeatmaps([coarse, a]);
  assert.deepEqual([g.width, g.height], [2, 2]);
  close(g.data, [t2, t2, t2, t2]);
});

test('layerNames: commas or +, trimmed; a repeated or empty list is an error', () => {
  assert.deepEqual(layerNames('a, b+c'), ['a', 'b', 'c']);
  assert.deepEqual(layerNames(['x']), ['x']);
  assert.equal(layerNames(undefined), undefined);
  assert.throws(() => layerNames('a,a'), /named twice/);
  assert.throws(() => layerNames(' , '), /no layer named/);
});

test('FusedExplainer fuses the maps of each layer at the finest grid; explainerFor builds it from "a,b"', async () => {
  await initEngine();
  const network = buildNetwork('resnet18-w8', [64, 64, 3], 4, { activation: 'sigmoid', seed: 7 });
  const deep = findTargetLayer(network);
  const deepSize = (deep.output as tfl.SymbolicTensor).shape[1] as number;
  const shallow = network.layers.find((l) => {
    const s = (l.output as tfl.SymbolicTensor).shape;
    return s.length === 4 && s[1] === deepSize * 2 && /relu|add/i.test(l.name);
  });
  assert.ok(shallow, 'a layer at twice the deep layer resolution');
  const image: CamInput = { size: 64, channels: 3, data: Float32Array.from({ length: 64 * 64 * 3 }, (_, i) => Math.sin(i * 0.37)) };
  const targets = [{ image: 0, classIndex: 1 }, { image: 0, classIndex: 3 }];
  const parts = [shallow.name, deep.name].map((layer) => new CamExplainer(network, 'sigmoid', { layer }));
  const fused = new FusedExplainer(parts);
  assert.equal(fused.layerName, `${shallow.name}+${deep.name}`);
  assert.deepEqual(fused.cells, [deepSize * 2, deepSize * 2]);
  const results = fused.explain([image], targets, 'layercam');
  const single = parts.map((p) => p.explain([image], targets, 'layercam'));
  results.forEach((r, i) => {
    assert.equal(r.raw.width, deepSize * 2);
    close(r.raw.data, fuseHeatmaps([single[0][i].raw, single[1][i].raw]).data);
    assert.ok(Math.abs(r.score - single[1][i].score) < 1e-4, 'the class score does not depend on the layer');
  });
  const model = { network, metadata: { activation: 'sigmoid' } } as unknown as FundusModel;
  const viaModel = explainerFor(model, { layer: `${shallow.name},${deep.name}` });
  assert.ok(viaModel instanceof FusedExplainer);
  assert.equal(explainerFor(model, { layer: [shallow.name, deep.name] }), viaModel, 'cached per layer list');
  assert.ok(explainerFor(model, { layer: deep.name }) instanceof CamExplainer);
  assert.throws(() => new FusedExplainer([parts[0]]), /at least two layers/);
});
