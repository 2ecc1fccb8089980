import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';

export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The real VietAI dataset, read-only (see DEVELOPERS.md). Tests read only small slices of it. */
export const VIETAI_DIR = join(PROJECT_ROOT, '..', 'shared', 'data', 'vietai');

export function tempDir(prefix = 'fundus-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}
