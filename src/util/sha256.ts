import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** The sha256 of a file's bytes, hex (read whole: label CSVs, split files, model files). */
export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}
