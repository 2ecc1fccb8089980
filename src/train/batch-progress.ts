import { progress } from '../util/progress.js';
import type { Progress } from '../util/progress.js';
import type { LoopSettings } from './loop-settings.js';

/**
 * How the batches of a run show their progress: a bar per epoch on a terminal; without one, a line a minute, so that
 * a log file shows the run is alive and how fast it goes (images per second of this process).
 */
export class BatchProgress {
  private imagesSeen = 0;
  private secondsSpent = 0;
  private lastLogAt = Date.now();
  private bar: Progress | undefined;
  private epoch = 0;
  private best = NaN;

  constructor(
    private readonly s: Pick<LoopSettings, 'epochs' | 'quiet' | 'monitor' | 'log'>,
    private readonly batchesPerEpoch: number,
  ) {}

  /** An epoch starts (or resumes at batch `doneBatches`); `best` is the best monitored value so far (NaN: none). */
  startEpoch(epoch: number, doneBatches: number, best: number): void {
    this.epoch = epoch;
    this.best = best;
    this.bar = progress(`epoch ${epoch + 1}/${this.s.epochs}`, this.batchesPerEpoch, { quiet: this.s.quiet });
    this.bar.tick(doneBatches);
  }

  /**
   * Batch `b` (0-based) of `images` images took `seconds`; `meanLoss` is the epoch's so far, and `parts` its auxiliary
   * losses so far by name (`adv_loss`: the source head's; `attention_loss`: lesion attention's).
   */
  batchDone(b: number, images: number, seconds: number, meanLoss: number, now: number, parts: Record<string, number> = {}): void {
    this.secondsSpent += seconds;
    this.imagesSeen += images;
    this.bar?.tick(1, { loss: meanLoss, ...(Number.isFinite(this.best) ? { [`best_${this.s.monitor}`]: this.best } : {}) });
    if (!process.stderr.isTTY && now - this.lastLogAt >= 60_000) {
      this.s.log(
        `  epoch ${this.epoch + 1} batch ${b + 1}/${this.batchesPerEpoch} loss ${meanLoss.toFixed(4)} ` +
          Object.entries(parts)
            .map(([name, v]) => `${name} ${v.toFixed(4)} `)
            .join('') +
          `${(this.imagesSeen / this.secondsSpent).toFixed(2)} images/s`,
      );
      this.lastLogAt = now;
    }
  }

  endEpoch(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
