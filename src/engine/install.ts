// Everything the native engine changes in tfjs, installed in one place and in this order, once per process: the
// self-check (selfcheck.ts) first verifies every internal the steps rely on, then the steps are installed, then a
// small training step must give plain tfjs's numbers. When anything fails, every installed step is undone and the
// process runs on plain tfjs (the JS CPU backend). Every step leaves tfjs's own code in charge on other backends.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Registers tfjs's gradients and the relu6 activation that the steps replace (without it they would be absent).
import '@tensorflow/tfjs-layers';
import { NATIVE_BACKEND, REPLACED_KERNELS, registerNativeBackend } from './backend.js';
import { installNativeGradients, installRelu6Activation } from './gradients.js';
import { installNativeAdam } from './adam.js';
import { installConvLayerFusion } from './layer-fusion.js';
import { installBatchMoments } from './moments.js';
import { installEarlyRelease } from './release.js';
import { describeTfjsVersions } from './internals.js';
import { checkInternals, checkTrainingStep, type Problem } from './selfcheck.js';

type Undo = () => void;

interface Step {
  name: string;
  install(): Undo;
}

/** The patches, in the order they are installed (later ones rely on earlier ones). */
export const INSTALL_STEPS: readonly Step[] = [
  { name: 'native backend and kernels', install: registerNativeBackend },
  { name: 'native gradients of Mean, Sum, Square, ReLU, ReLU6 and batch norm', install: installNativeGradients },
  { name: "tfjs-layers' relu6 activation as one ReLU6 kernel", install: installRelu6Activation },
  { name: "tfjs-layers' convolution layers with bias and activation fused", install: installConvLayerFusion },
  { name: "batch moments in one native pass (tfjs-core's moments)", install: installBatchMoments },
  { name: 'native Adam update', install: installNativeAdam },
  { name: 'early release and batch-norm fusion in the backward pass', install: installEarlyRelease },
];

/** What the start-up self-check found. */
export interface SelfCheck {
  /** Every check passed and the native engine is installed. */
  passed: boolean;
  /** The tfjs packages checked. */
  tfjs: string;
  /** The patches installed (none when a check failed). */
  steps: string[];
  /** Why the native engine is not installed: each names the tfjs internal that is not as expected. */
  problems: Problem[];
  /** Patches that did not take effect: the numbers are right, only slower. */
  notes: string[];
}

let outcome: Promise<SelfCheck> | undefined;

/** Checks tfjs's internals and installs the native engine, once per process; afterwards `native` is a registered
 * backend exactly when `passed`. The caller has checked that the addon loads. */
export function installEngine(): Promise<SelfCheck> {
  outcome ??= install();
  return outcome;
}

async function install(): Promise<SelfCheck> {
  const tfjs = describeTfjsVersions();
  const failed = (problems: Problem[]): SelfCheck => ({ passed: false, tfjs, steps: [], problems, notes: [] });
  const before = checkInternals(REPLACED_KERNELS);
  if (before.length > 0) return failed(before);
  const undo: Undo[] = [];
  const undoAll = async () => {
    if (tf.getBackend() === NATIVE_BACKEND) await tf.setBackend('cpu');
    for (const u of undo.reverse()) u();
  };
  for (const step of INSTALL_STEPS) {
    try {
      undo.push(step.install());
    } catch (e) {
      await undoAll();
      return failed([{ internal: `install step: ${step.name}`, detail: `threw ${(e as Error).message}` }]);
    }
  }
  const { problems, notes } = await checkTrainingStep(NATIVE_BACKEND);
  if (problems.length > 0) {
    await undoAll();
    return failed(problems);
  }
  return { passed: true, tfjs, steps: INSTALL_STEPS.map((s) => s.name), problems: [], notes };
}
