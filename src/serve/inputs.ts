import { readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { InputError } from '../util/errors.js';

/** File extensions treated as photographs when walking a folder (explicitly named files are always tried). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.tif', '.tiff', '.webp']);

export function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

async function walk(dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile() && isImageName(e.name)) out.push(p);
  }
}

/**
 * Expands the command line's files and folders into image paths: folders are walked recursively (hidden entries
 * skipped, sorted so that runs are reproducible); files are kept as given, whatever their extension, so that a
 * misnamed file is reported rather than silently ignored. A path that does not exist is an input error.
 */
export async function collectImages(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) {
    let s;
    try {
      s = await stat(p);
    } catch {
      throw new InputError('no such file or folder', { file: p });
    }
    const found: string[] = [];
    if (s.isDirectory()) await walk(p, found);
    else found.push(p);
    for (const f of found) {
      const key = resolve(f);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(f);
    }
  }
  return out;
}
