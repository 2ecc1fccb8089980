/** A photograph a run could not use, and why (the reason without the file name). */
export interface SkippedPhoto {
  path: string;
  reason: string;
}

/**
 * Exit status of a command that wrote its results for every good photograph but had to skip some (explain, embed,
 * evaluate): not 0, so that scripts notice, and not 1 or 2, which mean that nothing usable was written.
 */
export const PARTIAL_EXIT_CODE = 3;

/** Lists the skipped photographs on stderr, one line each, and sets the partial exit status when there are any. */
export function reportSkipped(command: string, skipped: readonly SkippedPhoto[]): void {
  for (const s of skipped) process.stderr.write(`fundus ${command}: skipped ${s.path}: ${s.reason}\n`);
  if (skipped.length > 0) process.exitCode = PARTIAL_EXIT_CODE;
}
