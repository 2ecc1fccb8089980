import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { computeReferencePredictions, readReferencePredictions, REFERENCE_PREDICTIONS } from '../../src/models/reference.js';
import { PROJECT_ROOT } from '../helpers.js';

// The bundled models must predict on the sample photographs exactly what they predicted when they were saved: this
// is where a change to decoding, cropping or resizing that would silently shift every prediction gets caught.
for (const name of ['default', 'focus', 'alexnet-focus']) {
  const dir = join(PROJECT_ROOT, 'models', name);
  test(`models/${name} predicts on samples/ what it predicted when saved`, { skip: !existsSync(join(dir, REFERENCE_PREDICTIONS)) && 'no reference' }, async () => {
    await initEngine();
    const model = await loadModel(dir);
    const expected = await readReferencePredictions(dir);
    const actual = await computeReferencePredictions(model, join(PROJECT_ROOT, 'samples', 'images'));
    assert.deepEqual(actual.classes, expected.classes);
    assert.deepEqual(Object.keys(actual.images), Object.keys(expected.images));
    for (const [image, probs] of Object.entries(expected.images)) {
      const got = actual.images[image];
      // float32 kernels may sum in another order on another CPU: 1e-4 is far below any decision's sensitivity
      probs.forEach((p, c) => assert.ok(Math.abs(got[c] - p) <= 1e-4, `${image} ${expected.classes[c]}: ${got[c]} vs ${p} saved`));
    }
  });
}
