// What fundus may replace or delete: only what it wrote itself. The commands that write outputs (train --out,
// predict --out / --heatmaps, explain -o) check here first and refuse, with an InputError that names the path,
// anything else: a user's folder of photos, a photograph, a model folder, a file some other program wrote.
import { readdir, stat } from 'node:fs/promises';
import { relative, resolve, isAbsolute } from 'node:path';
import { InputError } from './errors.js';

/** Files an operating system leaves in folders (Finder, Explorer): never counted as someone's content. */
export const OS_LITTER = new Set(['.DS_Store', 'Thumbs.db', 'desktop.ini']);

/** True when `path` is `dir` itself or lies somewhere under it (by path, after resolving both). */
export function isInside(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

export type PathKind = 'missing' | 'file' | 'folder' | 'other';

/** What is at `path` (following symbolic links). */
export async function pathKind(path: string): Promise<PathKind> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'folder' : s.isFile() ? 'file' : 'other';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return 'missing';
    throw err;
  }
}

/** The entries of a folder, operating-system litter left out; `undefined` when there is no such folder. */
export async function folderEntries(dir: string, what: string): Promise<string[] | undefined> {
  const kind = await pathKind(dir);
  if (kind === 'missing') return undefined;
  if (kind !== 'folder') throw new InputError(`${what} exists and is not a folder`, { file: dir });
  return (await readdir(dir)).filter((n) => !OS_LITTER.has(n)).sort();
}

/** A short list of names for a message: `a.jpg, notes.txt and 12 more`. */
export function someNames(names: readonly string[], max = 3): string {
  const shown = names.slice(0, max).map((n) => (n.length > 60 ? n.slice(0, 57) + '...' : n));
  return names.length > max ? `${shown.join(', ')} and ${names.length - max} more` : shown.join(', ');
}
