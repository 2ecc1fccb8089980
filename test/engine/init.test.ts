// initEngine's choice of backend and its one-line warning when the native engine is unavailable.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PROJECT_ROOT } from '../helpers.js';
import { nativeOrSkip } from './native.js';

const script = `
import { initEngine } from './src/engine/index.ts';
const a = await initEngine();
const b = await initEngine();
console.log(JSON.stringify([a, b]));
`;

function runInit(env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  return { infos: JSON.parse(r.stdout.trim().split('\n').pop()!), stderr: r.stderr };
}

it('without the native engine: the JS CPU backend and exactly one line saying how to enable it', () => {
  const { infos, stderr } = runInit({ FUNDUS_NATIVE: '0' });
  assert.equal(infos[0].backend, 'cpu');
  assert.equal(infos[1].backend, 'cpu');
  const lines = stderr.split('\n').filter((l) => l.includes('fundus'));
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], /slow JS CPU backend.*apt-get install libdnnl-dev && npm run build:native/);
});

it('with the native engine: selects it, reports its threads (FUNDUS_THREADS), prints nothing', { skip: await nativeOrSkip() }, () => {
  const { infos, stderr } = runInit({ FUNDUS_THREADS: '1' });
  assert.equal(infos[0].backend, 'native');
  assert.equal(infos[0].threads, 1);
  assert.match(infos[0].onednn, /^\d+\.\d+/);
  assert.equal(stderr.trim(), '');
});
