import cliProgress from 'cli-progress';

export interface Progress {
  /** Advances by `n` and updates the extra fields shown after the bar (e.g. loss, metric). */
  tick(n?: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

/**
 * A progress bar on stderr for work that takes more than a few seconds. Silent when stderr is not a terminal or
 * when `quiet` is set, so that piped output and tests stay clean.
 */
export function progress(label: string, total: number, opts: { quiet?: boolean } = {}): Progress {
  if (opts.quiet || !process.stderr.isTTY || process.env.FUNDUS_NO_PROGRESS) {
    return { tick() {}, stop() {} };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} {percentage}% eta {eta_formatted} {extra}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { extra: '' });
  let value = 0;
  return {
    tick(n = 1, fields) {
      value += n;
      const extra = fields
        ? Object.entries(fields)
            .map(([k, v]) => `${k}=${typeof v === 'number' ? v.toFixed(4) : v}`)
            .join(' ')
        : '';
      bar.update(value, { extra });
    },
    stop() {
      bar.stop();
    },
  };
}
