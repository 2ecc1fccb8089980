// Shared by the benchmark workers: their command-line numbers and the timing rule every side (and peer) uses.

/** The number after `name` on the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/**
 * Median seconds per call (the machine is shared: the median resists bursts of other load); the Python peers time the
 * same way. With `warmup`, one untimed call first (primitive creation, first allocations).
 */
export function medianSeconds(fn: () => void, reps: number, warmup: boolean): number {
  if (warmup) fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor((times.length - 1) / 2)];
}

/** `medianSeconds` for asynchronous calls (inference sessions, image encoders). */
export async function medianSecondsAsync(fn: () => Promise<unknown>, reps: number, warmup: boolean): Promise<number> {
  if (warmup) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await fn();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor((times.length - 1) / 2)];
}
