// What `train` may replace: checked before any data is read or any step trained, so that a refusal costs nothing.
//
// --out (the model folder, replaced as a whole when training ends):
//   nothing there or an empty folder     written
//   a folder that is not a fundus model  refused, --force or not (a folder of photos, notes, a dataset)
//   a file                               refused, --force or not
//   a fundus model written by this run   replaced: re-running the command resumes or, when finished, finalises again.
//                                        "This run" = the run directory's run.json names this --out and the sha256 of
//                                        the fundus.json that is there now (recorded each time the run writes it);
//                                        files added since (an evaluation) and a model card edited since need --force
//   any other fundus model               refused unless --force (its card, history, ... go with it)
//   a model folder with foreign files    refused, --force or not, naming them
// --run-dir (checkpoints, history; deleted by --restart): refused when it holds anything fundus does not write there,
// and it may not be --out, nor lie inside it or contain it.
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MODEL_CARD } from '../models/card.js';
import { METADATA_JSON, isFundusModelDir, isModelDirFile } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { sha256File } from '../util/sha256.js';
import { folderEntries, isInside, pathKind, someNames } from '../util/owned.js';

/** The run directory's record of the model it wrote last. */
export const RUN_JSON = 'run.json';

/** The split a run made of a CSV given without a split file (see train-data.ts). */
export const RUN_SPLIT_JSON = 'split.json';

export interface RunRecord {
  format: 'fundus-run';
  version: 1;
  /** The model folder this run writes (absolute). */
  out: string;
  /** sha256 of the fundus.json it wrote there last: the model is this run's only while it is unchanged. */
  fundusJsonSha256: string;
  /** sha256 of the model card it wrote there last: an edited card is someone's work, replaced only with --force. */
  modelCardSha256?: string;
  writtenAt: string;
}

/**
 * Entries a run directory holds: checkpoint, best model, members (one-vs-normal), history, events, run.json, the split
 * it made, temp files of atomic writes.
 */
function isRunDirEntry(name: string): boolean {
  if (['checkpoint', 'best', 'members', 'history.csv', RUN_JSON, RUN_SPLIT_JSON].includes(name)) return true;
  if (name.startsWith('events.out.tfevents.')) return true;
  return /^\.(checkpoint|best|history\.csv|run\.json|split\.json|events\.out\.tfevents\..+)\.\d+\.[0-9a-f]{8}\.tmp$/.test(name);
}

/** What train itself puts into the model folder (see trainModel). */
function isTrainOutput(name: string): boolean {
  return ['model.json', 'weights.bin', METADATA_JSON, 'split.json', 'history.csv', MODEL_CARD].includes(name) || name.startsWith('events.out.tfevents.');
}

async function sha256Of(path: string): Promise<string | undefined> {
  try {
    return await sha256File(path);
  } catch {
    return undefined;
  }
}

async function readRunRecord(runDir: string): Promise<Partial<RunRecord> | undefined> {
  try {
    return JSON.parse(await readFile(join(runDir, RUN_JSON), 'utf8')) as Partial<RunRecord>;
  } catch {
    return undefined;
  }
}

/** The run directory's record when it names `out` as its model folder. */
async function runRecordFor(out: string, runDir: string): Promise<Partial<RunRecord> | undefined> {
  const rec = await readRunRecord(runDir);
  return rec?.format === 'fundus-run' && rec.out === out ? rec : undefined;
}

/** True when `out`'s file `name` is the one the run wrote there (its recorded sha256), nobody having changed it since. */
async function unchangedSince(out: string, name: string, recordedSha256: string | undefined): Promise<boolean> {
  return recordedSha256 !== undefined && recordedSha256 === (await sha256Of(join(out, name)));
}

async function describeModel(out: string): Promise<string> {
  try {
    const m = JSON.parse(await readFile(join(out, METADATA_JSON), 'utf8')) as Partial<ModelMetadata>;
    return [m.architecture, m.task, m.createdAt && `written ${m.createdAt}`].filter(Boolean).join(', ');
  } catch {
    return 'unreadable fundus.json';
  }
}

/**
 * Checks `out` and `runDir` before training (see the table above) and, with `restart`, clears the run directory.
 * Throws InputError naming the path when the run would delete or replace something it should not.
 */
export async function prepareTrainOutput(out: string, runDir: string, opts: { force?: boolean; restart?: boolean } = {}): Promise<void> {
  const outAbs = resolve(out);
  const runAbs = resolve(runDir);
  if (isInside(runAbs, outAbs) || isInside(outAbs, runAbs)) {
    throw new InputError(
      `--out and the run directory (${runDir}) must be separate folders, neither inside the other: the model folder is replaced as a whole when training ends`,
      { file: out },
    );
  }
  const runEntries = await folderEntries(runAbs, 'the run directory');
  const foreign = (runEntries ?? []).filter((n) => !isRunDirEntry(n));
  if (foreign.length > 0) {
    throw new InputError(
      `the run directory holds files fundus did not write (${someNames(foreign)}); checkpoints and history would be written among them${opts.restart ? ' and --restart would delete them' : ''}: choose another --run-dir`,
      { file: runDir },
    );
  }

  const kind = await pathKind(outAbs);
  if (kind === 'file' || kind === 'other') throw new InputError('--out exists and is not a folder: refusing to replace it with a model', { file: out });
  const entries = kind === 'folder' ? ((await folderEntries(outAbs, '--out')) ?? []) : [];
  if (entries.length > 0) {
    if (!(await isFundusModelDir(outAbs))) {
      throw new InputError(
        `--out is a folder that is not a fundus model (it holds ${someNames(entries)}); refusing to delete it: choose a new or empty folder${opts.force ? ' (--force replaces only a model fundus wrote)' : ''}`,
        { file: out },
      );
    }
    const extra = entries.filter((n) => !isModelDirFile(n));
    if (extra.length > 0) {
      throw new InputError(
        `--out holds a fundus model and files fundus did not write (${someNames(extra)}); the model folder is replaced as a whole: move them out first`,
        { file: out },
      );
    }
    if (!opts.force) {
      const rec = await runRecordFor(outAbs, runAbs);
      if (!(await unchangedSince(outAbs, METADATA_JSON, rec?.fundusJsonSha256))) {
        throw new InputError(
          `--out already holds a fundus model (${await describeModel(outAbs)}) that this run (${runDir}) did not write; ` +
            'pass --force to replace it (the whole folder goes, model card included), or choose another --out',
          { file: out },
        );
      }
      // This run's model, but an evaluation, ... added since, or its card edited since, would go with it: only with --force.
      const added = entries.filter((n) => !isTrainOutput(n));
      if (entries.includes(MODEL_CARD) && !(await unchangedSince(outAbs, MODEL_CARD, rec?.modelCardSha256))) added.push(MODEL_CARD);
      if (added.length > 0) {
        throw new InputError(`--out holds this run's model and files added to it or edited since (${someNames(added)}); pass --force to replace them too`, { file: out });
      }
    }
  }
  if (opts.restart) await rm(runAbs, { recursive: true, force: true });
}

/**
 * Records in the run directory that it wrote the model at `out` (as it is now), so that re-running the command may
 * replace it. Best effort: the model is written already, and without the record a re-run merely asks for --force.
 */
export async function recordRunOutput(out: string, runDir: string): Promise<void> {
  const outAbs = resolve(out);
  const sha = await sha256Of(join(outAbs, METADATA_JSON));
  if (!sha) return;
  const card = await sha256Of(join(outAbs, MODEL_CARD));
  const rec: RunRecord = { format: 'fundus-run', version: 1, out: outAbs, fundusJsonSha256: sha, ...(card ? { modelCardSha256: card } : {}), writtenAt: new Date().toISOString() };
  await writeFileAtomic(join(runDir, RUN_JSON), JSON.stringify(rec, null, 2) + '\n').catch(() => undefined);
}
