// The viewer's front-end build: plain TypeScript modules bundled by esbuild into web/dist (git-ignored). Run by
// `npm run build:web`, by npm's `prepare` on a fresh `npm ci`, and by `fundus serve` when the sources are newer
// than the bundle.
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDirAtomic } from '../src/util/atomic.js';

export const WEB_DIR = dirname(fileURLToPath(import.meta.url));
export const WEB_DIST = join(WEB_DIR, 'dist');

export async function buildWeb(opts: { outDir?: string; minify?: boolean } = {}): Promise<void> {
  const outDir = opts.outDir ?? WEB_DIST;
  await writeDirAtomic(outDir, async (tmp) => {
    await build({
      entryPoints: { app: join(WEB_DIR, 'src', 'main.ts') },
      outdir: join(tmp, 'assets'),
      bundle: true,
      format: 'esm',
      target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
      minify: opts.minify ?? true,
      sourcemap: true,
      logLevel: 'warning',
      legalComments: 'none',
    });
    await copyFile(join(WEB_DIR, 'index.html'), join(tmp, 'index.html'));
  });
}

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestSource(p));
    else newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  return newest;
}

/** Builds the viewer unless web/dist is newer than every source (so a fresh clone or an edit just works). */
export async function ensureWebBuilt(): Promise<void> {
  let built = 0;
  try {
    built = Math.min((await stat(join(WEB_DIST, 'index.html'))).mtimeMs, (await stat(join(WEB_DIST, 'assets', 'app.js'))).mtimeMs);
  } catch {
    built = 0;
  }
  const sources = Math.max(await newestSource(join(WEB_DIR, 'src')), (await stat(join(WEB_DIR, 'index.html'))).mtimeMs);
  // The API types the viewer imports live in src/serve.
  const types = (await stat(join(WEB_DIR, '..', 'src', 'serve', 'api-types.ts'))).mtimeMs;
  if (built >= Math.max(sources, types)) return;
  await buildWeb();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await rm(WEB_DIST, { recursive: true, force: true });
  await mkdir(dirname(WEB_DIST), { recursive: true });
  await buildWeb();
  console.log(`built ${WEB_DIST}`);
}
