import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT, tempDir } from './helpers.js';
import { importGraph, layeringProblems } from '../scripts/import-graph.js';

test('src/ imports one way (data -> engine -> models -> train -> eval/explain/selflearn -> serve -> cli) with no cycle', () => {
  const graph = importGraph(join(PROJECT_ROOT, 'src'));
  assert.ok(graph.edges.size > 100, `only ${graph.edges.size} modules found`);
  assert.deepEqual(layeringProblems(graph), []);
});

test('the check finds circles (type-only ones too), upward imports, imports out of src/ and folders without a layer', async () => {
  const root = join(await tempDir('fundus-graph-'), 'src');
  const files: Record<string, string> = {
    'data/a.ts': "import type { B } from './b.js';\nexport type A = B[];\n",
    'data/b.ts': "import type { A } from './a.js';\nexport interface B { a?: A }\n",
    'data/c.ts': "export const c = () => import('../train/t.js');\n",
    'train/t.ts': "export { c } from '../data/c.js';\n",
    'eval/e.ts': "import '../explain/x.js';\nexport const e = 1;\n",
    'explain/x.ts': "import '../eval/f.js';\n",
    'eval/f.ts': "export const f = 1;\n",
    'serve/s.ts': "import '../../web/build.js';\n",
    'nowhere/n.ts': "import '../util/u.js';\n",
    'util/u.ts': 'export const u = 1;\n',
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
  const problems = layeringProblems(importGraph(root));
  const expected = [
    'import cycle: data/a.ts <-> data/b.ts',
    'import cycle: data/c.ts <-> train/t.ts',
    'data/c.ts imports train/t.ts: an upward import',
    'serve/s.ts imports ../web/build.js, outside src/',
    'src/nowhere/ has no layer',
    'folders import each other: eval/ <-> explain/',
  ];
  for (const e of expected) assert.ok(problems.some((p) => p.startsWith(e)), `missing "${e}" in:\n${problems.join('\n')}`);
  assert.ok(!problems.some((p) => p.startsWith('train/t.ts imports')), 'a downward import is fine');
});
