import type { LoopSettings } from './loop-settings.js';

/**
 * When the loop saves a mid-epoch checkpoint: every `checkpointBatches` batches or every `checkpointSeconds`,
 * whichever comes first, counted from the start of the epoch (or of the resume); never after an epoch's last batch,
 * whose end checkpoints anyway. One policy per epoch.
 */
export class CheckpointPolicy {
  private sinceCheckpoint = 0;
  private lastCheckpointAt = Date.now();

  constructor(
    private readonly s: Pick<LoopSettings, 'checkpointBatches' | 'checkpointSeconds'>,
    private readonly batchesPerEpoch: number,
  ) {}

  /** Counts batch `b` (0-based) as done at `now`; true when a checkpoint is due. */
  afterBatch(b: number, now: number): boolean {
    this.sinceCheckpoint++;
    return (
      b + 1 < this.batchesPerEpoch &&
      ((this.s.checkpointBatches > 0 && this.sinceCheckpoint >= this.s.checkpointBatches) || now - this.lastCheckpointAt >= this.s.checkpointSeconds * 1000)
    );
  }

  saved(): void {
    this.sinceCheckpoint = 0;
    this.lastCheckpointAt = Date.now();
  }
}
