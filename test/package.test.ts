// The package as a user gets it: `npm pack`, installed into an empty folder, imported as 'fundus' by the README's
// library example and run as the `fundus` command, on a sample photograph.
//
// Installing is done as npm does it for a tarball, offline: the tarball is unpacked into node_modules/fundus, and the
// dependencies its package.json declares (those only, so that an undeclared one fails here) are linked from this
// checkout's node_modules, where `npm ci` put them. The install script, which compiles the native addons into
// native/build (minutes), is not run: the checkout's build of the same sources is linked there instead when it has
// one (else the installed package runs on its fallbacks, the JS CPU backend and sharp, about 10 s per run here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT, tempDir } from './helpers.js';

const SAMPLE = join(PROJECT_ROOT, 'samples', 'images', '004f7ec58fad.jpg');

function newest(path: string): number {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((n) => newest(join(path, n))));
}

function oldest(paths: string[]): number {
  try {
    return Math.min(...paths.map((p) => statSync(p).mtimeMs));
  } catch {
    return 0;
  }
}

/** The build (`npm run build`, run by `npm ci`'s prepare) when the sources changed since; CI finds it fresh. */
function ensureBuilt(): void {
  const built = oldest([join(PROJECT_ROOT, 'dist', 'index.js'), join(PROJECT_ROOT, 'web', 'dist', 'index.html')]);
  const sources = Math.max(...['src', 'web/src', 'web/index.html', 'tsconfig.json', 'tsconfig.build.json'].map((p) => newest(join(PROJECT_ROOT, p))));
  if (built < sources) execFileSync('npm', ['run', 'build'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** The README's library example: the code block after `<!-- library-example -->`. */
function readmeExample(): string {
  const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
  const m = /<!-- library-example -->\s*```(?:js|ts)\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README.md has no code block after <!-- library-example -->');
  return m[1];
}

/** Starts `fundus serve` from `bin` on a free port, predicts `photo` through POST /v1/predict, and stops it. */
async function predictThroughServe(bin: string, cwd: string, env: NodeJS.ProcessEnv, photo: Buffer): Promise<Record<string, number>> {
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fundus serve did not start within 60 s:\n${output}`)), 60_000);
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        const m = /fundus serve: (http:\/\/\S+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
      child.once('exit', (code) => reject(new Error(`fundus serve exited (${code}):\n${output}`)));
    });
    const r = await fetch(url + 'v1/predict', { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/jpeg' } });
    const body = (await r.json()) as { probabilities?: Record<string, number> };
    assert.equal(r.status, 200, `fundus serve from the package: ${JSON.stringify(body)}\n${output}`);
    return body.probabilities!;
  } finally {
    child.kill();
  }
}

test('npm pack: the tarball installs into an empty folder, its README example and its CLI run on a sample photograph', { timeout: 180_000 }, async () => {
  ensureBuilt();
  const work = await tempDir('fundus-pack-');
  const [packed] = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }),
  ) as { filename: string; size: number; files: { path: string }[] }[];
  const files = new Set(packed.files.map((f) => f.path));
  for (const f of ['package.json', 'README.md', 'bin/fundus.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'dist/data/decode-worker.js', 'dist/serve/inference-worker.js', 'web/dist/index.html', 'models/default/weights.bin', 'models/default/fundus.json', 'native/binding.gyp', 'scripts/build-native.mjs']) {
    assert.ok(files.has(f), `the tarball lacks ${f}`);
  }
  const stray = [...files].filter((f) => /^(src|test|benchmarks|runs|cache|datasets|splits)\/|^models\/(?!default\/)|\.ts$(?<!\.d\.ts)/.test(f));
  assert.deepEqual(stray, [], 'sources, tests and the other models stay out of the package');
  assert.ok(packed.size < 25e6, `the tarball is ${(packed.size / 1e6).toFixed(1)} MB`);

  // Install: unpack as node_modules/fundus, link the declared dependencies.
  const app = join(work, 'app');
  const installed = join(app, 'node_modules', 'fundus');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(work, packed.filename), '-C', installed, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies?: Record<string, string> };
  assert.ok(!('tsx' in manifest.dependencies) && !('esbuild' in manifest.dependencies), 'tsx and esbuild are for development only');
  for (const dep of Object.keys(manifest.dependencies)) {
    const link = join(app, 'node_modules', dep);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(PROJECT_ROOT, 'node_modules', dep), link, 'dir');
  }
  if (existsSync(join(PROJECT_ROOT, 'native', 'build', 'Release'))) symlinkSync(join(PROJECT_ROOT, 'native', 'build'), join(installed, 'native', 'build'), 'dir');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'uses-fundus', private: true, type: 'module', dependencies: { fundus: `file:${packed.filename}` } }));

  // The README's example, run from the app folder with the sample photograph where it expects it.
  mkdirSync(join(app, 'samples', 'images'), { recursive: true });
  writeFileSync(join(app, 'samples', 'images', '004f7ec58fad.jpg'), readFileSync(SAMPLE));
  writeFileSync(join(app, 'example.mjs'), readmeExample());
  const env = { ...process.env, FUNDUS_CACHE_DIR: join(work, 'cache'), FUNDUS_NO_PROGRESS: '1' };
  const run = spawnSync(process.execPath, ['example.mjs'], { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, `the README example failed:\n${run.stderr}`);
  const reference = JSON.parse(readFileSync(join(PROJECT_ROOT, 'models', 'default', 'reference-predictions.json'), 'utf8')) as {
    classes: string[];
    images: Record<string, number[]>;
  };
  const line = run.stdout.split('\n').find((l) => l.includes('004f7ec58fad.jpg'));
  assert.ok(line, `the example printed no result for the sample:\n${run.stdout}`);
  // Its probabilities are the bundled model's own on this photograph (recorded when the model was saved).
  const shown = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, number>;
  assert.deepEqual(Object.keys(shown), reference.classes);
  reference.classes.forEach((c, k) => assert.ok(Math.abs(shown[c] - reference.images['004f7ec58fad.jpg'][k]) < 2e-3, `${c}: ${shown[c]} against ${reference.images['004f7ec58fad.jpg'][k]}`));

  // The bin, from the compiled package (no src/, no tsx there).
  const cli = spawnSync(process.execPath, [join(installed, 'bin', 'fundus.js'), 'predict', 'samples/images', '--format', 'json'], { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(cli.status, 0, `fundus predict from the package failed:\n${cli.stderr}`);
  const rows = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file?: string; probabilities?: Record<string, number> });
  const row = rows.find((r) => r.file?.endsWith('004f7ec58fad.jpg'));
  assert.ok(row?.probabilities, cli.stdout);
  reference.classes.forEach((c, k) => assert.ok(Math.abs(row.probabilities![c] - reference.images['004f7ec58fad.jpg'][k]) < 2e-3, c));

  // The server from the compiled package: its inference thread runs dist/serve/inference-worker.js.
  const served = await predictThroughServe(join(installed, 'bin', 'fundus.js'), app, env, readFileSync(SAMPLE));
  reference.classes.forEach((c, k) => assert.ok(Math.abs(served[c] - reference.images['004f7ec58fad.jpg'][k]) < 2e-3, `served ${c}`));

  // The declarations serve a TypeScript user: the API type-checks from 'fundus' alone.
  writeFileSync(
    join(app, 'consumer.ts'),
    "import { Predictor, LabelSpreading, rocAuc, type PredictionRecord } from 'fundus';\n" +
      'export async function firstPositive(p: Predictor, photo: string): Promise<string[]> {\n' +
      '  const [r]: PredictionRecord[] = await p.classify([photo]);\n  return r.positive;\n}\n' +
      'export const auc: number | null = rocAuc([0, 1], [0.2, 0.9]);\nexport const ls = new LabelSpreading({ kernel: "knn" });\n',
  );
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, files: ['consumer.ts'] }),
  );
  // @types/node is the user's own (fundus's declarations use Node's Buffer).
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true });
  symlinkSync(join(PROJECT_ROOT, 'node_modules', '@types', 'node'), join(app, 'node_modules', '@types', 'node'), 'dir');
  const tsc = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `a TypeScript user's code does not type-check against the package:\n${tsc.stdout}${tsc.stderr}`);
});
