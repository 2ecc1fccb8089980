import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { readSplitPart } from '../eval/run.js';

/** The three parts of a split file, as filenames, and the file's bytes (copied into the model directory). */
export interface SplitParts {
  train: string[];
  validation: string[];
  test: string[];
  text: string;
  sha256: string;
}

/** Reads a split file (`{ version: 1, parts: { train, validation, test } }`); InputError naming it when malformed. */
export async function readSplitParts(path: string): Promise<SplitParts> {
  const [train, validation, test] = await Promise.all(['train', 'validation', 'test'].map((p) => readSplitPart(path, p)));
  const text = await readFile(path, 'utf8');
  return { train, validation, test, text, sha256: createHash('sha256').update(text).digest('hex') };
}
