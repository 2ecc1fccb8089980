// Overlays and the faithfulness table of a model on real held-out photographs: K images each of diabetic
// retinopathy, glaucoma and normal (single-label ones, from the TEST part of splits/vietai.json), every CAM method.
// Run: npx tsx benchmarks/explain-real.ts [--model models/default] [--per-class 4] [--methods all] [--steps 20]
//        [--layer NAME] [--classes predicted|all|...] [--no-faithfulness] [--out runs/explain-real]
// Then open runs/explain-real/index.html (or look at the PNGs); faithfulness.txt holds the table per method.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { explainCommand } from '../src/explain/commands.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const VIETAI = join('..', 'shared', 'data', 'vietai');
const perClass = Number(arg('per-class', '4'));
const split = JSON.parse(await readFile('splits/vietai.json', 'utf8')) as { parts: { test: string[] } };
const test = new Set(split.parts.test);
const [header, ...rows] = (await readFile(join(VIETAI, 'train.csv'), 'utf8')).trim().split('\n');
const columns = header.split(',');
const picked: string[] = [];
for (const cls of ['diabetic retinopathy', 'glaucoma', 'normal']) {
  const k = columns.indexOf(cls);
  const only = rows
    .map((r) => r.split(','))
    .filter((r) => test.has(r[0]) && r[k] === '1' && r.slice(1).filter((v) => v === '1').length === 1)
    .map((r) => r[0]);
  picked.push(...only.slice(0, perClass));
  console.log(`${cls}: ${only.slice(0, perClass).join(' ')}`);
}
await explainCommand(
  arg('model', 'models/default'),
  picked.map((f) => join(VIETAI, 'train', f)),
  {
    out: arg('out', 'runs/explain-real'),
    method: arg('methods', 'all'),
    classes: arg('classes', 'predicted'),
    faithfulness: !process.argv.includes('--no-faithfulness'),
    steps: arg('steps', '20'),
    layer: process.argv.includes('--layer') ? arg('layer', '') : undefined,
    raw: 'npy',
    random: arg('random', 'cells'),
  },
);
