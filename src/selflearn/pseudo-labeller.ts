import { basename } from 'node:path';
import type { LabelledImage } from '../data/labels.js';
import type { FundusModel } from '../models/io.js';
import { stopAtDeadline } from './deadline.js';
import { embedFiles, type Embeddings } from './embed.js';
import { predictProbabilities } from './evaluate.js';
import { methodName, selectConfident, spreadingScores, type PseudoLabelMethod, type PseudoScores } from './pseudolabel.js';
import type { RoundInfo } from './schema.js';

/** A model whose predictions or embeddings make pseudo-labels, and its name in the report. */
export interface Teacher {
  model: FundusModel;
  name: string;
}

/** One method's pseudo-labels of one round, what an arm trains on besides the labelled images. */
export interface RoundLabels {
  pseudo: LabelledImage[];
  /** Accepted pseudo-labels per class (positives). */
  positivesPerClass: Record<string, number>;
  teacher: string;
}

export interface PseudoLabellerOptions {
  /** Class order of the labels (the original's classes). */
  classes: string[];
  activation: 'sigmoid' | 'softmax';
  /** The labelled images whose labels spread (the train part). */
  seeds: LabelledImage[];
  /** Paths of the unlabelled images to pseudo-label. */
  unlabelled: string[];
  /** Confidence a pseudo-label must reach (see selectConfident). */
  threshold: number;
  /** Embedding layer (default: penultimate). */
  layer?: string;
  /** Use the preprocessing cache (default true). */
  cache?: boolean;
  /**
   * The run's deadline (Date.now() milliseconds): a pass over photographs (embedding, classifier scores) stops once it
   * has come, between two batches and without waiting for one being decoded, with a DeadlinePassed.
   */
  deadline?: number;
  log: (message: string) => void;
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/**
 * Pseudo-labels the unlabelled images with a method and a teacher: label spreading over the teacher's embeddings of
 * the seeds and the unlabelled images, or the teacher's own probabilities; then keeps the confident ones. A teacher's
 * embeddings are computed once (the knn and rbf kernels share them).
 */
export class PseudoLabeller {
  private readonly embedded = new Map<string, Embeddings>();

  constructor(private readonly opts: PseudoLabellerOptions) {}

  private async embeddingsOf(teacher: FundusModel, label: string): Promise<Embeddings> {
    let e = this.embedded.get(teacher.dir);
    if (!e) {
      const { seeds, unlabelled, layer, cache, deadline } = this.opts;
      const paths = [...seeds.map((t) => t.path), ...unlabelled];
      e = await embedFiles(teacher, paths, { layer, cache, progressLabel: `embed (${label})`, ...stopAtDeadline(deadline, paths.length, 'embedded') });
      this.embedded.set(teacher.dir, e);
    }
    return e;
  }

  private async scores(method: PseudoLabelMethod, teacher: FundusModel): Promise<PseudoScores> {
    const { classes, activation, seeds, unlabelled, cache, deadline } = this.opts;
    const C = classes.length;
    if (method.kind === 'confidence') {
      const probs = await predictProbabilities(teacher, unlabelled, cache, stopAtDeadline(deadline, unlabelled.length, 'scored'));
      return { scores: Float64Array.from(probs), numClasses: C, activation, info: { source: 'classifier probabilities' } };
    }
    const emb = await this.embeddingsOf(teacher, methodName(method));
    const labelled = new Uint8Array(seeds.length * C);
    seeds.forEach((t, i) => labelled.set(t.labels!, i * C));
    const s = spreadingScores(emb.matrix, labelled, seeds.length, C, activation, method);
    s.info.layer = emb.layer;
    s.info.dim = emb.matrix.cols;
    s.info.seeds = seeds.length;
    return s;
  }

  /** The pseudo-labels of one method and round, and the round's record for the report; DeadlinePassed at the deadline. */
  async label(method: PseudoLabelMethod, round: number, teacher: Teacher): Promise<{ labels: RoundLabels; info: RoundInfo }> {
    const { classes, unlabelled, threshold, log } = this.opts;
    const name = methodName(method);
    log(`${name}, round ${round}: pseudo-labelling ${unlabelled.length} images with ${teacher.name}`);
    const scores = await this.scores(method, teacher.model);
    const accepted = selectConfident(scores, threshold);
    const positivesPerClass = Object.fromEntries(classes.map((c, k) => [c, accepted.filter((a) => a.labels[k] === 1).length]));
    const info: RoundInfo = {
      method: name,
      round,
      teacher: teacher.name,
      unlabelledScored: unlabelled.length,
      accepted: accepted.length,
      positivesPerClass,
      meanConfidence: mean(accepted.map((a) => Math.min(...a.confidence))),
      info: scores.info,
    };
    log(`${name}, round ${round}: ${accepted.length} of ${unlabelled.length} pseudo-labels at confidence >= ${threshold}`);
    if (accepted.length === 0) log(`${name}, round ${round}: no pseudo-label reached the threshold; no retraining for this method`);
    const pseudo: LabelledImage[] = accepted.map((a) => ({ filename: basename(unlabelled[a.index]), path: unlabelled[a.index], labels: a.labels }));
    return { labels: { pseudo, positivesPerClass, teacher: teacher.name }, info };
  }
}
