import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { outputStem } from '../data/dicom.js';
import { isUngradable, type PhotoRecord } from '../models/records.js';
import { HEATMAPS_INDEX, checkHeatmapClasses, checkHeatmapsDir, type HeatmapChoice } from '../serve/heatmap-files.js';
import type { HeatmapRequest } from './batch.js';

/**
 * The heatmaps a submit asks for, checked as `fundus predict --heatmaps` checks them (a new or empty folder or one
 * fundus writes heatmaps into, not inside a model folder, holding none of the photographs; classes the model has).
 * Named classes are kept in the model's order, so that the same choice always reads the same. Nothing is written
 * (see openHeatmapsIndex).
 */
export async function heatmapRequest(dir: string, choice: HeatmapChoice, classes: readonly string[], photos: string[]): Promise<HeatmapRequest> {
  checkHeatmapClasses(choice.classes, classes);
  await checkHeatmapsDir(dir, photos);
  const which = Array.isArray(choice.classes) ? classes.filter((c) => (choice.classes as string[]).includes(c)) : choice.classes;
  return { dir: resolve(dir), method: choice.method, classes: which };
}

/**
 * A photograph's stem in a queue's heatmaps folder: its file name's (see outputStem) and the first 8 hex digits of
 * its content hash. Many workers write into one folder at once, each knowing only its own chunk, so no name can be
 * claimed as `fundus predict` claims them; the hash keeps two photographs named alike apart, and gives a photograph
 * the same names on every attempt, so that a retried chunk overwrites its own overlays and no one else's.
 */
export function queueHeatmapStem(file: string, id: string): string {
  return `${outputStem(file)}.${id.slice(0, 8)}`;
}

/** Whether a recorded result still wants its heatmaps: a gradable photograph whose record names none. */
export function lacksHeatmaps(json: string): boolean {
  const rec = JSON.parse(json) as PhotoRecord;
  return !isUngradable(rec) && rec.heatmaps === undefined;
}

/**
 * Refuses a chunk's heatmaps folder this worker cannot see (its index is missing: the shared storage is not mounted
 * here, or not at the submitting machine's path).
 */
export async function checkHeatmapsReachable(r: HeatmapRequest, worker: string): Promise<void> {
  try {
    await stat(join(r.dir, HEATMAPS_INDEX));
  } catch (err) {
    throw new Error(
      `the heatmaps folder ${r.dir} is not reachable from worker ${worker} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message} for its ${HEATMAPS_INDEX}): ` +
        `mount the shared storage at the same path as on the submitting machine`,
    );
  }
}
