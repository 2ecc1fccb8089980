// `fundus data check` on a 50 MB label CSV (issue 20, section 5): wall time and peak memory of the real CLI.
// The CSV names the real VietAI photographs first, then ~1.5 million made-up file names that are not on disk (each
// one a missing-image error), and a few hundred bad lines; the images folder is the real one.
// Usage: npx tsx benchmarks/data-check-large.ts [megabytes=50]   (prints one JSON line; writes nothing in the repo)
// Measured on the 2-core development machine while a training run used it (load average ~8), one run each:
// before (whole CSV in memory, a stat() per missing row): 460 s, peak RSS 1843 MiB; streamed: 28 s, 563 MiB.
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { tempDir, VIETAI_DIR, PROJECT_ROOT } from '../test/helpers.js';

const megabytes = Number(process.argv[2] ?? 50);
const dir = await tempDir('fundus-check-bench-');
const csv = join(dir, 'large.csv');
const real = (await readFile(join(VIETAI_DIR, 'train.csv'), 'utf8')).trim().split('\n');
const out = createWriteStream(csv);
let bytes = 0;
let lines = 0;
const write = async (line: string) => {
  bytes += line.length + 1;
  lines++;
  if (!out.write(line + '\n')) await once(out, 'drain');
};
for (const line of real) await write(line);
for (let i = 0; bytes < megabytes * 1024 * 1024; i++) {
  if (i % 5000 === 4999) await write(`bad${i}.jpg,0,2,0,0,0,0,1`);
  else await write(`made-up-${String(i).padStart(8, '0')}.jpg,${i % 2},${(i >> 1) % 2},0,0,0,0,${i % 3 === 0 ? 1 : 0}`);
}
out.end();
await once(out, 'finish');

const t0 = performance.now();
const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, '--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'data', 'check', csv, join(VIETAI_DIR, 'train')], {
  encoding: 'utf8',
  maxBuffer: 1 << 30,
  env: { ...process.env, FUNDUS_NO_PROGRESS: '1' },
});
const seconds = (performance.now() - t0) / 1000;
const peakRssMb = Number(r.stderr.trim().split('\n').pop()) / 1024;
const summary = r.stdout.split('\n').slice(0, 3).join(' | ');
console.log(JSON.stringify({ csvMB: +(bytes / 1048576).toFixed(1), lines, exit: r.status, seconds: +seconds.toFixed(1), peakRssMb: +peakRssMb.toFixed(0), summary }));
await rm(dir, { recursive: true, force: true });
