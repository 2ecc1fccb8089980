import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../util/errors.js';

const IMAGE_EXT = /\.(jpe?g|png|tiff?|webp|bmp)$/i;

/** Expands image arguments: files are kept as given, folders become their image files (sorted by name). */
export async function expandImageArgs(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    const st = await stat(a).catch(() => undefined);
    if (!st) throw new InputError('no such file or folder', { file: a });
    if (st.isDirectory()) {
      const names = (await readdir(a)).filter((n) => IMAGE_EXT.test(n)).sort();
      if (names.length === 0) throw new InputError('the folder holds no images (.jpg, .png, ...)', { file: a });
      out.push(...names.map((n) => join(a, n)));
    } else {
      out.push(a);
    }
  }
  return out;
}
