import type { RetrainMode } from './schema.js';

/**
 * The run's wall-clock deadline as arms see it: an arm is started only when its estimated duration (the time budget
 * of its mode plus the slowest overhead seen so far: data loading, validation, threshold tuning, the test evaluation)
 * would end before the deadline.
 */
export class ArmDeadline {
  /** Seconds an arm took beyond its training steps, the slowest so far (a minute until one is seen). */
  private slowestOverhead = 60;

  constructor(
    /** Date.now() milliseconds; undefined: no deadline. */
    private readonly deadline: number | undefined,
    /** Time budget per arm by mode; a mode without one is never skipped. */
    private readonly armMinutes: Partial<Record<RetrainMode, number>> = {},
  ) {}

  /** Why an arm of this mode would not be run now (undefined: it fits). */
  whyNot(mode: RetrainMode): string | undefined {
    const minutes = this.armMinutes[mode];
    if (this.deadline === undefined || minutes === undefined) return undefined;
    const endsAt = Date.now() + (minutes * 60 + this.slowestOverhead) * 1000;
    return endsAt > this.deadline ? `not run: it could end ${((endsAt - this.deadline) / 60000).toFixed(1)} min past the run's deadline` : undefined;
  }

  /** Records what an arm took, wall and in training steps, for the next estimates. */
  observe(wallSeconds: number, trainSeconds: number): void {
    this.slowestOverhead = Math.max(this.slowestOverhead, wallSeconds - trainSeconds);
  }
}
