// Records what a model predicts on the sample photographs (samples/images) into its directory as
// reference-predictions.json; test/models/bundled.test.ts checks that the bundled models keep predicting it.
// Run once after training a bundled model: npx tsx scripts/record-reference-predictions.ts models/default
import { join } from 'node:path';
import { initEngine } from '../src/engine/index.js';
import { loadModel } from '../src/models/io.js';
import { writeReferencePredictions, REFERENCE_PREDICTIONS } from '../src/models/reference.js';

await initEngine();
for (const dir of process.argv.slice(2)) {
  await writeReferencePredictions(await loadModel(dir), join(import.meta.dirname, '..', 'samples', 'images'));
  console.log(`wrote ${join(dir, REFERENCE_PREDICTIONS)}`);
}
