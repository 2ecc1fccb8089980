import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from './helpers.js';

test('fundus --help lists the program', () => {
  const out = execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), '--help'], { encoding: 'utf8' });
  assert.match(out, /Usage: fundus/);
});

test('usage errors exit 2 in every command (missing argument, unknown option, invalid choice); --help exits 0', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], { encoding: 'utf8' });
  for (const args of [['predict'], ['explain', '--bogus'], ['data', 'check'], ['train', '--task', 'nope'], ['queue', 'submit'], ['evaluate', 'x', '--bootstrap', 'many']]) {
    const r = run(...args);
    assert.equal(r.status, 2, `fundus ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /error: /, args.join(' '));
  }
  const help = run('train', '--help');
  assert.equal(help.status, 0);
  assert.match(run('--help').stdout, /2 usage errors and bad input/);
});
