// Decode + preprocess throughput on the real data, without the cache, filling it, and reading it back.
// Usage: npx tsx benchmarks/data-preprocess.ts [--n 3435] [--size 227] [--channels green|rgb] [--clahe]
// The peer (PIL + numpy doing the same crop/resize, benchmarks/data_preprocess_peer.py) runs in the same call when
// Debian's python3 is there, and the ratio is printed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { readDataset } from '../src/data/csv.js';
import { loadPreprocessed } from '../src/data/cache.js';
import { DEFAULT_PREPROCESS } from '../src/data/preprocess.js';
import type { PreprocessSettings } from '../src/data/preprocess.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '3435' },
    size: { type: 'string', default: String(DEFAULT_PREPROCESS.size) },
    channels: { type: 'string', default: DEFAULT_PREPROCESS.channels },
    clahe: { type: 'boolean', default: false },
    'no-peer': { type: 'boolean', default: false },
  },
});
const data = join(import.meta.dirname, '..', '..', 'shared', 'data', 'vietai');
const ds = await readDataset(join(data, 'train.csv'), join(data, 'train'));
const paths = ds.images.slice(0, Number(values.n)).map((i) => i.path);
const channels = values.channels === 'rgb' ? 'rgb' : 'green';
const settings: PreprocessSettings = {
  ...DEFAULT_PREPROCESS,
  size: Number(values.size),
  channels,
  clahe: values.clahe,
  normalize: channels === 'rgb' ? { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] } : { mean: [0.5], std: [0.25] },
};
const cacheDir = await mkdtemp(join(tmpdir(), 'fundus-bench-cache-'));
const time = async (label: string, fn: () => Promise<unknown>): Promise<number> => {
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  const rate = paths.length / s;
  console.log(`${label.padEnd(34)} ${rate.toFixed(0).padStart(6)} images/s  (${paths.length} images in ${s.toFixed(2)} s)`);
  return rate;
};
console.log(`settings ${JSON.stringify(settings)}; ${availableParallelism()} cores`);
try {
  const raw = await time('decode+preprocess, no cache', () => loadPreprocessed(paths, settings, { cache: false }));
  await time('decode+preprocess, filling cache', () => loadPreprocessed(paths, settings, { cacheDir }));
  const warm = await time('from cache (+ normalise)', () => loadPreprocessed(paths, settings, { cacheDir }));
  console.log(`cache speed-up: ${(warm / raw).toFixed(1)}x`);
  if (!values['no-peer']) {
    const r = spawnSync('/usr/bin/python3', [join(import.meta.dirname, 'data_preprocess_peer.py'), String(paths.length), String(settings.size), channels, values.clahe ? '1' : '0', ...[]], {
      encoding: 'utf8',
      input: paths.join('\n'),
    });
    const m = /([\d.]+) images\/s/.exec(r.stdout ?? '');
    if (r.status === 0 && m) {
      const peer = Number(m[1]);
      console.log(`peer (PIL + numpy, 1 process)       ${peer.toFixed(0).padStart(6)} images/s`);
      console.log(`ratio fundus/peer: ${(raw / peer).toFixed(2)}x without cache, ${(warm / peer).toFixed(1)}x with cache`);
    } else console.log(`peer did not run: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  }
} finally {
  await rm(cacheDir, { recursive: true, force: true });
}
