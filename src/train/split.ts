import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { readSplit } from '../data/split.js';

/** The three parts of a split file, as filenames, and the file's bytes (copied into the model directory). */
export interface SplitParts {
  train: string[];
  validation: string[];
  test: string[];
  text: string;
  sha256: string;
}

/** Reads a split file with the data stage's checks (InputError naming it when malformed), keeping its exact bytes. */
export async function readSplitParts(path: string): Promise<SplitParts> {
  const split = await readSplit(path);
  const text = await readFile(path, 'utf8');
  const { train, validation, test } = split.parts;
  return { train, validation, test, text, sha256: createHash('sha256').update(text).digest('hex') };
}
