import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from './helpers.js';

test('fundus --help lists the program', () => {
  const out = execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), '--help'], { encoding: 'utf8' });
  assert.match(out, /Usage: fundus/);
});
