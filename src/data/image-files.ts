import type { Dirent, Stats } from 'node:fs';
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { InputError } from '../util/errors.js';
import { framePath, splitFramePath } from './dicom.js';
import { dicomFrameCount } from './photo-source.js';

/**
 * File extensions treated as photographs when a folder is walked (lower case, with the dot). The one list: every
 * command that finds images in folders (predict, explain, embed, selflearn, data check and duplicates) uses it.
 */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.tif', '.tiff', '.webp', '.bmp', '.dcm', '.dicom'];

const EXTENSIONS = new Set(IMAGE_EXTENSIONS);

/** Whether a file name has one of the image extensions (case-insensitive). */
export function isImageName(name: string): boolean {
  return EXTENSIONS.has(extname(name).toLowerCase());
}

/** An entry left out while walking a folder, and why. */
export interface SkippedEntry {
  path: string;
  reason: string;
}

export interface CollectOptions {
  /** Walk sub-folders too (default true); false: only the images directly inside each folder. */
  recursive?: boolean;
  /** A folder holding no image is an InputError naming it (default); `allow`: it contributes nothing. */
  emptyFolder?: 'error' | 'allow';
  /**
   * Called for each entry left out of a walk that the user may not expect to lose: a dangling symbolic link, a link
   * back into a folder being walked (a loop), a sub-folder that cannot be read. Default: a warning line on stderr.
   */
  onSkip?: (skipped: SkippedEntry) => void;
}

function warnSkip(s: SkippedEntry): void {
  process.stderr.write(`fundus: skipping ${s.path}: ${s.reason}\n`);
}

function byName(a: Dirent, b: Dirent): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

const folderId = (s: Stats) => `${s.dev}:${s.ino}`;

async function danglingTarget(path: string): Promise<string | undefined> {
  try {
    if (!(await lstat(path)).isSymbolicLink()) return undefined;
    return await readlink(path);
  } catch {
    return undefined;
  }
}

/**
 * Expands files and folders into image paths. Folders are walked (recursively unless `recursive` is false) in a
 * stable order (entries sorted by name; hidden entries skipped), keeping the files with an image extension. Symbolic
 * links are followed: a dangling one, or one leading back into a folder being walked, is skipped with a warning
 * (`onSkip`) instead of failing the run. A file named explicitly is kept whatever its extension, so that a misnamed
 * file is reported by whoever reads it rather than silently ignored. A path given twice (or found twice) is kept
 * once, at its first place. Paths are returned as given, joined with the names found under them. A multi-frame
 * DICOM file gives one path per frame, `<file>#frame-<n>`; such a path may also be given itself.
 *
 * InputError naming the path for an argument that does not exist (a dangling link says where it points), a folder
 * that cannot be read, or (unless `emptyFolder` is `allow`) a folder with no image.
 */
export async function collectImages(paths: readonly string[], opts: CollectOptions = {}): Promise<string[]> {
  const recursive = opts.recursive ?? true;
  const onSkip = opts.onSkip ?? warnSkip;
  const out: string[] = [];
  const seen = new Set<string>();
  const addOne = (p: string) => {
    const key = resolve(p);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(p);
  };
  // A multi-frame DICOM file is one photograph per frame, `<file>#frame-<n>` (see dicom.ts).
  const add = async (p: string) => {
    const frames = await dicomFrameCount(p);
    if (frames === undefined || frames === 1) addOne(p);
    else for (let f = 1; f <= frames; f++) addOne(framePath(p, f));
  };

  /** Walks `dir` (whose stat is `st`); `ancestors` are the folders above it in this walk, by identity. Returns the images found. */
  const walk = async (dir: string, st: Stats, ancestors: Set<string>, top: boolean): Promise<number> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      const msg = `cannot list the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
      if (top) throw new InputError(msg, { file: dir });
      onSkip({ path: dir, reason: msg });
      return 0;
    }
    const inside = new Set(ancestors).add(folderId(st));
    let found = 0;
    for (const e of entries.sort(byName)) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      let target: Stats | undefined;
      if (e.isSymbolicLink() || isDir) {
        try {
          target = await stat(p);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (e.isSymbolicLink() && (code === 'ENOENT' || code === 'ENOTDIR')) {
            onSkip({ path: p, reason: `a symbolic link to ${(await danglingTarget(p)) ?? 'a missing file'}, which does not exist` });
          } else if (code === 'ELOOP') {
            onSkip({ path: p, reason: 'a symbolic link that points to itself (a loop)' });
          } else {
            onSkip({ path: p, reason: `cannot read it (${code ?? (err as Error).message})` });
          }
          continue;
        }
        isDir = target.isDirectory();
        isFile = target.isFile();
      }
      if (isDir) {
        if (!recursive) continue;
        if (inside.has(folderId(target!))) {
          onSkip({ path: p, reason: 'leads back into a folder that is being walked (a loop of links); not walked again' });
          continue;
        }
        found += await walk(p, target!, inside, false);
      } else if (isFile && isImageName(e.name)) {
        await add(p);
        found++;
      }
    }
    return found;
  };

  for (const p of paths) {
    const { file, frame } = splitFramePath(p);
    if (frame !== undefined && file !== p) {
      // one frame of a DICOM file, named as the walk names it: kept as given; reading it says if it does not exist
      addOne(p);
      continue;
    }
    let st: Stats;
    try {
      st = await stat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const target = await danglingTarget(p);
      if (code === 'ELOOP') throw new InputError('a symbolic link loop (the link leads back to itself)', { file: p });
      throw new InputError(target !== undefined ? `a symbolic link to ${target}, which does not exist` : 'no such file or folder', { file: p });
    }
    if (st.isDirectory()) {
      const found = await walk(p, st, new Set(), true);
      if (found === 0 && (opts.emptyFolder ?? 'error') === 'error') {
        throw new InputError(`no images (${IMAGE_EXTENSIONS.join(' ')}) in this folder${recursive ? ' or below it' : ''}`, { file: p });
      }
    } else await add(p);
  }
  return out;
}
