import { spawnSync } from 'node:child_process';
import { open, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A photograph whose reading never ends until `release()`: a named pipe, which blocks its reader until a writer comes,
 * as a stalled network share would hold a decode. `release()` puts an empty file in its place (a photo that fails to
 * decode, at once, however often it is read again) and then wakes the readers still waiting on the pipe, so that no
 * libuv thread stays blocked and the test process can exit.
 */
export function stalledPhoto(dir: string): { path: string; release: () => Promise<void> } {
  const path = join(dir, 'stalled.jpg');
  const r = spawnSync('mkfifo', [path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfifo ${path}: ${r.stderr || r.error}`);
  let released = false;
  return {
    path,
    release: async () => {
      if (released) return;
      released = true;
      const pipe = join(dir, 'stalled.fifo');
      await rename(path, pipe);
      await writeFile(path, '');
      // Read-write never blocks on Linux, and counts as the writer the waiting readers wait for: they then read nothing.
      await (await open(pipe, 'r+')).close();
    },
  };
}
