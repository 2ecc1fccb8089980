import type { DicomIdentifiers, DicomPhotoInfo } from '../data/dicom.js';
import { describeReasons, type Gradability, type UngradableReason } from '../data/gradability.js';

/**
 * What a result says about a DICOM photograph (absent for other files): its SOP Instance UID (the key a record system
 * files the result by), laterality, acquisition date. Patient identifiers only when asked for (`--show-identifiers`).
 */
export type DicomRecordInfo = DicomPhotoInfo & { patient?: DicomIdentifiers };

/** One image's result: a probability and a decision per class, in the model's class order. */
export interface PredictionRecord {
  /** The file path (CLI) or the uploaded file's name (API), when known. */
  file?: string;
  /** `true` when the gradability gate passed the photo; absent when it was not checked (`--no-gradability-check`). */
  gradable?: true;
  probabilities: Record<string, number>;
  /** `true` where the probability reaches the model's threshold for that class. */
  decisions: Record<string, boolean>;
  /** The classes decided positive, in class order. */
  positive: string[];
  dicom?: DicomRecordInfo;
  /** The heatmap overlays written for it (`--heatmaps`): class → PNG path. */
  heatmaps?: Record<string, string>;
}

/**
 * Turns one row of probabilities into the per-class record shared by the CLI, the API, the queue and the viewer;
 * `gradable` marks a photo the gradability gate checked and passed.
 */
export function toRecord(
  probs: ArrayLike<number>,
  offset: number,
  classes: readonly string[],
  thresholds: readonly number[],
  file?: string,
  gradable = false,
): PredictionRecord {
  const probabilities: Record<string, number> = {};
  const decisions: Record<string, boolean> = {};
  const positive: string[] = [];
  classes.forEach((c, j) => {
    // Rounded so that outputs are stable and readable; 1e-6 is far below any clinically meaningful difference.
    const p = Math.round(probs[offset + j] * 1e6) / 1e6;
    probabilities[c] = p;
    decisions[c] = p >= thresholds[j];
    if (decisions[c]) positive.push(c);
  });
  return { ...(file === undefined ? {} : { file }), ...(gradable ? { gradable: true as const } : {}), probabilities, decisions, positive };
}

/** A photograph the gradability gate refused: no probabilities, no decisions, and why. */
export interface UngradableRecord {
  file?: string;
  gradable: false;
  ungradable: {
    reasons: UngradableReason[];
    /** The reasons in words. */
    message: string;
  };
  dicom?: DicomRecordInfo;
}

/** What fundus reports for one photograph: its prediction, or why it was not graded. */
export type PhotoRecord = PredictionRecord | UngradableRecord;

export function toUngradableRecord(g: Gradability, file?: string): UngradableRecord {
  const ungradable = { reasons: [...g.reasons], message: describeReasons(g.reasons) };
  return file === undefined ? { gradable: false, ungradable } : { file, gradable: false, ungradable };
}

export function isUngradable(r: PhotoRecord): r is UngradableRecord {
  return r.gradable === false;
}
