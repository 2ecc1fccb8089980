import type { RetrainMode } from './schema.js';

/**
 * The run's wall-clock deadline as arms see it: an arm is started only before the deadline and, where its mode has a
 * time budget, only when its estimated duration (the budget plus the slowest overhead seen so far: data loading,
 * validation, threshold tuning, the test evaluation) would end before it.
 */
export class ArmDeadline {
  /** Seconds an arm took beyond its training steps, the slowest so far (a minute until one is seen). */
  private slowestOverhead = 60;

  constructor(
    /** Date.now() milliseconds; undefined: no deadline. */
    private readonly deadline: number | undefined,
    /** Time budget per arm by mode; an arm of a mode without one is skipped only once the deadline has passed. */
    private readonly armMinutes: Partial<Record<RetrainMode, number>> = {},
  ) {}

  /** Why an arm of this mode would not be run now (undefined: it fits). */
  whyNot(mode: RetrainMode): string | undefined {
    if (this.deadline === undefined) return undefined;
    if (Date.now() >= this.deadline) return "not run: it would start past the run's deadline";
    const minutes = this.armMinutes[mode];
    if (minutes === undefined) return undefined;
    const endsAt = Date.now() + (minutes * 60 + this.slowestOverhead) * 1000;
    return endsAt > this.deadline ? `not run: it could end ${((endsAt - this.deadline) / 60000).toFixed(1)} min past the run's deadline` : undefined;
  }

  /** Records what an arm took, wall and in training steps, for the next estimates. */
  observe(wallSeconds: number, trainSeconds: number): void {
    this.slowestOverhead = Math.max(this.slowestOverhead, wallSeconds - trainSeconds);
  }
}

/** A pass over photographs that the run's deadline stopped, and how far it got. */
export class DeadlinePassed extends Error {
  constructor(
    readonly done: number,
    readonly total: number,
    /** What the pass did to each photograph ("embedded", "scored"). */
    readonly what: string,
  ) {
    super(`the run's deadline passed with ${done} of ${total} photographs ${what}`);
    this.name = 'DeadlinePassed';
  }
}

/** How a pass over photographs is stopped at the run's deadline: the Predictor's `signal` and `onProgress` (RunOptions). */
export interface DeadlineStop {
  /** Aborts with a DeadlinePassed (how far the pass got) when the deadline comes; absent without a deadline. */
  signal?: AbortSignal;
  /** Tells the stop how far the pass got (the images done after each batch). */
  onProgress: (done: number) => void;
}

// setTimeout's longest delay (about 24.8 days); a later deadline is waited for in steps.
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Stops a pass over `total` photographs once the deadline (Date.now() milliseconds; undefined: none) has come, with a
 * DeadlinePassed through the pass: between two batches, and without waiting for a batch still being decoded (a batch
 * of large photographs can take half a minute). Made as the pass starts, it throws at once when the deadline has
 * already come; a pass that has done every photograph is not stopped.
 */
export function stopAtDeadline(deadline: number | undefined, total: number, what: string): DeadlineStop {
  if (deadline === undefined) return { onProgress: () => {} };
  if (Date.now() >= deadline) throw new DeadlinePassed(0, total, what);
  const controller = new AbortController();
  let done = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    const left = deadline - Date.now();
    if (left > 0) timer = setTimeout(arm, Math.min(left, MAX_DELAY_MS));
    else controller.abort(new DeadlinePassed(done, total, what));
    // Never what keeps the process alive.
    timer?.unref();
  };
  arm();
  return {
    signal: controller.signal,
    onProgress: (n) => {
      done = n;
      if (n >= total) clearTimeout(timer);
    },
  };
}
