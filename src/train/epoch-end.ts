// What the end of an epoch decides: its history row, whether it is the best so far, and whether the run stops.
import type { HistoryRow, TrainState } from './checkpoint.js';
import type { LoopSettings, Monitor } from './loop-settings.js';
import { learningRateAt } from './schedule.js';
import type { LrSchedule } from './schedule.js';
import { scoreProbabilities } from './scores.js';
import type { Validation } from './validation.js';

function better(monitor: Monitor, a: number, b: number): boolean {
  return monitor === 'val_loss' ? a < b : a > b;
}

/** Whether the run's training time has used up its budget (`maxMinutes`; never without one). */
export function budgetSpent(s: Pick<LoopSettings, 'maxMinutes'>, state: TrainState): boolean {
  return s.maxMinutes !== undefined && state.elapsedSeconds >= s.maxMinutes * 60;
}

/**
 * The history row of the epoch in progress, from its running sums and its validation (scored at 0.5). `fraction`
 * < 1 when a time budget cut the epoch short; `aux` adds the source head's loss and the lesion-attention loss.
 */
export function epochRow(
  state: TrainState,
  v: Validation,
  numClasses: number,
  schedule: LrSchedule,
  fraction: number,
  aux: { adversary: boolean; attention: boolean },
): HistoryRow {
  const sc = scoreProbabilities(v.targets, v.probs, numClasses, 0.5);
  return {
    epoch: state.epoch + 1,
    loss: state.epochLossSum / Math.max(1e-8, state.epochWeightSum),
    val_loss: v.loss,
    val_auc: sc.macroAuc ?? NaN,
    val_f1: sc.meanF1 ?? NaN,
    lr: learningRateAt(schedule, Math.max(0, state.step - 1)),
    seconds: state.elapsedSeconds,
    wall_time: Date.now() / 1000,
    ...(fraction < 1 ? { epoch_fraction: fraction } : {}),
    // the source head's cross-entropy (included in `loss`): near log(sources) when the features hide the source
    ...(aux.adversary ? { adv_loss: (state.epochAdvSum ?? 0) / Math.max(1e-8, state.epochWeightSum) } : {}),
    // the lesion-attention loss (its weighted part is in `loss`): minus the log of the class map's share in the boxes
    ...(aux.attention ? { attention_loss: (state.epochAttentionSum ?? 0) / Math.max(1, state.epochAttentionBatches ?? 0) } : {}),
  };
}

/**
 * Closes the epoch in `state` with its history `row`: keeps the best epoch of `monitor`, counts the epochs without
 * improvement, moves to the next epoch and marks the run done on early stopping, a spent time budget or the last
 * epoch. Returns whether this epoch is the new best (whose weights the caller keeps).
 */
export function closeEpoch(state: TrainState, row: HistoryRow, s: LoopSettings, fraction: number): boolean {
  const epoch = state.epoch;
  const value = row[s.monitor];
  state.history.push(row);
  const improved = Number.isFinite(value) && (!state.best || better(s.monitor, value, state.best.value));
  if (improved) {
    state.best = { value, epoch: epoch + 1 };
    state.badEpochs = 0;
  } else {
    state.badEpochs++;
  }
  s.log(
    `epoch ${epoch + 1}/${s.epochs}: loss ${row.loss.toFixed(4)} val_loss ${row.val_loss.toFixed(4)} ` +
      `val_auc ${row.val_auc.toFixed(4)} val_f1 ${row.val_f1.toFixed(4)}${improved ? ' (best)' : ''} [${state.elapsedSeconds.toFixed(0)} s]`,
  );
  state.epoch = epoch + 1;
  state.batch = 0;
  state.epochLossSum = 0;
  state.epochWeightSum = 0;
  if (s.adversary) state.epochAdvSum = 0;
  if (s.lesionAttention) [state.epochAttentionSum, state.epochAttentionBatches] = [0, 0];
  if (state.badEpochs >= s.patience) {
    s.log(`early stopping: ${s.monitor} has not improved for ${s.patience} epochs`);
    state.done = true;
  }
  if (budgetSpent(s, state) && state.epoch < s.epochs) {
    if (fraction === 1) s.log(`time budget of ${s.maxMinutes} min reached after epoch ${state.epoch}`);
    state.done = true;
  }
  if (state.epoch >= s.epochs) state.done = true;
  return improved;
}
