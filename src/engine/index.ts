import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { addonLoaded, configuredThreads, loadAddon, loadError } from './addon.js';
import { NATIVE_BACKEND } from './backend.js';
import { installEngine, type SelfCheck } from './install.js';
import { describeTfjsVersions, TESTED_TFJS_VERSION } from './internals.js';

export interface EngineInfo {
  /** The tfjs backend in use: `native` (oneDNN) or `cpu` (pure JavaScript). */
  backend: string;
  /** Threads the heavy kernels use (FUNDUS_THREADS, default: all cores); 1 on the JS backend. */
  threads: number;
  /** oneDNN version when the native engine runs. */
  onednn?: string;
  /** Why the native engine is not in use, when it is not. */
  reason?: string;
  /** The tfjs packages in use (package.json pins them). */
  tfjs: string;
  /** The start-up check of the tfjs internals the native engine patches; absent when the addon did not load. */
  selfCheck?: SelfCheck;
}

/** True when the oneDNN addon is built and loads. */
export function isNativeAvailable(): boolean {
  return loadAddon() !== null;
}

let warned = false;

/** Prints `message` on stderr, once per process. */
function warnOnce(message: string): void {
  if (warned) return;
  warned = true;
  process.stderr.write(message);
}

function selfCheckWarning(check: SelfCheck): string {
  return (
    `fundus: the native engine is off: tfjs internals it relies on are not as expected (${check.tfjs}; ` +
    `fundus is tested with ${TESTED_TFJS_VERSION}, which package.json pins):\n` +
    check.problems.map((p) => `  - ${p.internal}: ${p.detail}\n`).join('') +
    'fundus: running on the slow JS CPU backend instead. Reinstall the pinned tfjs (npm ci), or report this with the lines above.\n'
  );
}

const INFERENCE_SPIN_COUNT = 10_000;

export interface EngineOptions {
  /**
   * `training` (the default): the network has the cores to itself. `inference`: photos are decoded on other threads
   * at the same time (`fundus predict`), so idle engine threads should give their core back quickly. OpenMP's idle
   * threads spin 300,000 times before they sleep, milliseconds on current CPUs; 10,000 keeps the hand-over between
   * consecutive kernels fast and still frees the core soon after a batch. Only the first call in a process can set
   * this (OpenMP reads it when the addon loads), and GOMP_SPINCOUNT in the environment wins.
   */
  workload?: 'training' | 'inference';
}

/** Chooses the fastest available tfjs backend. Every command that runs a model calls this first. */
export async function initEngine(opts: EngineOptions = {}): Promise<EngineInfo> {
  const setSpin = opts.workload === 'inference' && !addonLoaded() && process.env.GOMP_SPINCOUNT === undefined;
  if (setSpin) process.env.GOMP_SPINCOUNT = String(INFERENCE_SPIN_COUNT);
  const addon = loadAddon();
  // Read by OpenMP as the addon loaded; processes started from here on should not inherit it.
  if (setSpin) delete process.env.GOMP_SPINCOUNT;
  const tfjs = describeTfjsVersions();
  let selfCheck: SelfCheck | undefined;
  if (addon) {
    selfCheck = await installEngine();
    if (selfCheck.passed) {
      if (tf.getBackend() !== NATIVE_BACKEND) await tf.setBackend(NATIVE_BACKEND);
      await tf.ready();
      if (selfCheck.notes.length > 0) warnOnce(selfCheck.notes.map((n) => `fundus: ${n}\n`).join(''));
      const info = addon.info();
      return { backend: tf.getBackend(), threads: info.threads, onednn: info.onednn, tfjs, selfCheck };
    }
  }
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
  if (selfCheck) {
    warnOnce(selfCheckWarning(selfCheck));
    const reason = `the self-check of the tfjs internals it patches failed: ${selfCheck.problems.map((p) => p.internal).join(', ')}`;
    return { backend: tf.getBackend(), threads: 1, reason, tfjs, selfCheck };
  }
  const reason = loadError() ?? 'the native addon did not load';
  warnOnce(
    `fundus: native engine unavailable (${reason}); running on the slow JS CPU backend. ` +
      'Enable it with: apt-get install libdnnl-dev && npm run build:native\n',
  );
  return { backend: tf.getBackend(), threads: 1, reason, tfjs };
}

export { configuredThreads };
export type { SelfCheck };
export type { Problem as SelfCheckProblem } from './selfcheck.js';
