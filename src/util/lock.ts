// A lock file against two fundus commands writing the same output at once (e.g. two `predict --resume --out x.csv`).
// Created whole or not at all (written aside, then hard-linked into place, which fails when the lock exists); a lock
// left by a process that no longer runs on this machine is taken over; released on exit, Ctrl-C included.
import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { InputError } from './errors.js';

export interface LockInfo {
  format: 'fundus-lock';
  /** The command holding it, e.g. `predict`. */
  command: string;
  pid: number;
  host: string;
  since: string;
  /** Tells this holder's lock from a later one at the same path. */
  token: string;
}

export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

function parseLock(text: string): LockInfo | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockInfo>;
    return v && v.format === 'fundus-lock' && typeof v.pid === 'number' && typeof v.token === 'string' ? (v as LockInfo) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process with this id exists (one of another user counts). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Takes the lock file `path` for `command`, or refuses with an InputError that says who holds it. A lock whose
 * process no longer runs (same host) is stale: it is taken over, and `onStale` is told.
 */
export async function acquireLock(path: string, command: string, onStale?: (holder: LockInfo) => void): Promise<Lock> {
  const info: LockInfo = { format: 'fundus-lock', command, pid: process.pid, host: hostname(), since: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  const text = JSON.stringify(info) + '\n';
  const aside = `${path}.${process.pid}.${info.token}.tmp`;
  await writeFile(aside, text);
  try {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        await link(aside, path);
        return held(path, info.token);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') {
          // A file system without hard links: create-exclusive, then write (a reader may see it empty for a moment).
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
          try {
            await writeFile(path, text, { flag: 'wx' });
            return held(path, info.token);
          } catch (err2) {
            if ((err2 as NodeJS.ErrnoException).code !== 'EEXIST') throw err2;
          }
        }
      }
      const current = await readIfThere(path);
      if (current === undefined) continue; // released meanwhile
      const holder = parseLock(current);
      if (!holder) {
        throw new InputError(`exists and is not a fundus lock file; remove it if no fundus ${command} is writing this output`, { file: path });
      }
      const since = holder.since ? `, since ${holder.since}` : '';
      if (holder.host !== info.host) {
        throw new InputError(
          `another fundus ${holder.command} (pid ${holder.pid} on ${holder.host}${since}) is writing this output; wait for it to finish, or delete the lock file if it is gone`,
          { file: path },
        );
      }
      if (isRunning(holder.pid)) {
        throw new InputError(
          `another fundus ${holder.command} (pid ${holder.pid}${since}) is writing this output; wait for it to finish, or delete the lock file if that process is not fundus`,
          { file: path },
        );
      }
      // Stale. Move it aside and check that what moved is the stale lock and not a fresh one taken meanwhile.
      const moved = `${path}.${process.pid}.${info.token}.stale`;
      try {
        await rename(path, moved);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const movedLock = parseLock((await readIfThere(moved)) ?? '');
      if (movedLock?.token === holder.token) {
        onStale?.(holder);
      } else {
        await link(moved, path).catch(() => undefined); // someone else's fresh lock: put it back
      }
      await rm(moved, { force: true });
    }
    throw new InputError('could not take the lock file (it keeps changing hands)', { file: path });
  } finally {
    await rm(aside, { force: true });
  }
}

function held(path: string, token: string): Lock {
  let released = false;
  const mine = (text: string | undefined) => text !== undefined && parseLock(text)?.token === token;
  // process.exit() (Ctrl-C handlers) skips finally blocks: the lock still goes.
  const onExit = () => {
    if (released) return;
    released = true;
    try {
      if (mine(readFileSync(path, 'utf8'))) unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.on('exit', onExit);
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      process.removeListener('exit', onExit);
      if (mine(await readIfThere(path))) await rm(path, { force: true });
    },
  };
}
