// Re-estimates a trained model's batch-norm statistics on its training images, re-tunes its thresholds on validation
// and rescores it on test, in place (see src/train/finalize.ts recalibrateModelDir).
// Usage: npx tsx scripts/train-recalibrate.ts <model_dir> [csv] [images] [split]
import { initEngine } from '../src/engine/index.js';
import { recalibrateModelDir } from '../src/train/finalize.js';

const [dir, csv = '../shared/data/vietai/train.csv', images = '../shared/data/vietai/train', split = 'splits/vietai.json'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: npx tsx scripts/train-recalibrate.ts <model_dir> [csv] [images] [split]');
  process.exit(2);
}
await initEngine();
const m = await recalibrateModelDir(dir, { csv, images, split }, { log: (l) => console.error(l) });
const t = m.metrics?.test as { macroAuc: number | null; meanF1: number | null };
console.log(JSON.stringify({ model: dir, testMacroAuc: t.macroAuc, testMeanF1: t.meanF1 }));
