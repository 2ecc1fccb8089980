// The viewer's front-end build: plain TypeScript modules bundled by esbuild into web/dist (git-ignored). Run by
// `npm run build:web` and `npm run build` (so by npm's `prepare` on a fresh `npm ci`); `fundus serve` serves what it
// finds there and never builds at run time, so an installed package needs no esbuild.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
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

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await rm(WEB_DIST, { recursive: true, force: true });
  await mkdir(dirname(WEB_DIST), { recursive: true });
  await buildWeb();
  console.log(`built ${WEB_DIST}`);
}
