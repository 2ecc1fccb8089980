import type * as tfl from '@tensorflow/tfjs-layers';
import { join } from 'node:path';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { buildNetwork } from '../models/architectures.js';
import { buildOneVsNormalNetwork, classSlug, loadMemberWeights } from '../models/combine.js';
import type { ModelMetadata } from '../models/metadata.js';
import { memberExamples, oneVsNormalMembers } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';
import type { HistoryRow } from './checkpoint.js';
import { initFromModel } from './init-from.js';
import { trainLoop } from './loop.js';
import type { LoopSettings } from './loop-settings.js';
import type { RunRecord } from './model-record.js';

/** What the one-vs-normal members add up to: one combined network, every member's history, timing and best epoch. */
export interface OneVsNormalResult {
  network: tfl.LayersModel;
  classes: string[];
  history: HistoryRow[];
  trainSeconds: number;
  imagesPerSecond: number;
  eventsCreatedAt: number;
  members: NonNullable<ModelMetadata['members']>;
}

/**
 * One binary member per pathology (that pathology vs normal), each trained with its own run directory under
 * `runDir/members`, then combined into one network. `extra` (pseudo-labelled examples, targets over the dataset's
 * classes) join each member whose pathology or `normal` they carry.
 */
export async function trainOneVsNormal(
  run: {
    model: string;
    inputShape: [number, number, number];
    dataset: Dataset;
    trainImages: LabelledImage[];
    valImages: LabelledImage[];
    extra: Example[];
    record: RunRecord;
    settings: LoopSettings;
    runDir: string;
    configExtra: Record<string, unknown>;
    init?: { network: tfl.LayersModel; metadata: ModelMetadata };
  },
  bytesOf: (images: { path: string }[]) => Promise<Uint8Array[]>,
): Promise<OneVsNormalResult> {
  const { dataset, settings, init } = run;
  const pathologies = oneVsNormalMembers();
  const combined = buildOneVsNormalNetwork(run.model, run.inputShape, pathologies);
  const history: HistoryRow[] = [];
  let trainSeconds = 0;
  let imagesSeen = 0;
  const eventsCreatedAt = Date.now() / 1000;
  const members: OneVsNormalResult['members'] = [];
  const fullIdx = (name: string) => dataset.classes.indexOf(name);
  for (const [m, p] of pathologies.entries()) {
    const train = [
      ...memberExamples(p, dataset, run.trainImages),
      ...run.extra
        .filter((e) => e.target[fullIdx(p)] === 1 || e.target[fullIdx('normal')] === 1)
        .map((e) => ({ ...e, target: Float32Array.of(e.target[fullIdx(p)]) })),
    ];
    const val = memberExamples(p, dataset, run.valImages);
    settings.log(`one-vs-normal member ${m + 1}/${pathologies.length} "${p}": ${train.length} training, ${val.length} validation images`);
    const member = buildNetwork(run.model, run.inputShape, 1, { activation: 'sigmoid', seed: settings.seed + m });
    const meta: ModelMetadata = { ...run.record, task: 'one-vs-normal', classes: [p], activation: 'sigmoid', thresholds: [0.5] };
    const r = await trainLoop(
      member,
      meta,
      { train, trainPixels: await bytesOf(train), validation: val, validationPixels: await bytesOf(val) },
      settings,
      join(run.runDir, 'members', classSlug(p)),
      { ...run.configExtra, member: p },
      // every member starts from the init model's features; only its one-output head is new
      init ? initFromModel(init, [p]) : undefined,
    );
    loadMemberWeights(combined.network, member, p);
    trainSeconds += r.trainSeconds;
    imagesSeen += r.imagesPerSecond * r.trainSeconds;
    for (const row of r.history) history.push({ ...row, member: m });
    members.push({ class: p, bestEpoch: r.best?.epoch ?? null, [settings.monitor]: r.best?.value ?? null, trainSeconds: r.trainSeconds });
    member.dispose();
  }
  return {
    network: combined.network,
    classes: combined.classes,
    history,
    trainSeconds,
    imagesPerSecond: trainSeconds > 0 ? imagesSeen / trainSeconds : NaN,
    eventsCreatedAt,
    members,
  };
}
