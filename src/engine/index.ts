import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { addonLoaded, configuredThreads, loadAddon, loadError } from './addon.js';
import { NATIVE_BACKEND, registerNativeBackend } from './backend.js';

export interface EngineInfo {
  /** The tfjs backend in use: `native` (oneDNN) or `cpu` (pure JavaScript). */
  backend: string;
  /** Threads the heavy kernels use (FUNDUS_THREADS, default: all cores); 1 on the JS backend. */
  threads: number;
  /** oneDNN version when the native engine runs. */
  onednn?: string;
  /** Why the native engine is not in use, when it is not. */
  reason?: string;
}

/** True when the oneDNN addon is built and loads. */
export function isNativeAvailable(): boolean {
  return loadAddon() !== null;
}

let warned = false;
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
  if (addon) {
    registerNativeBackend();
    if (tf.getBackend() !== NATIVE_BACKEND) await tf.setBackend(NATIVE_BACKEND);
    await tf.ready();
    const info = addon.info();
    return { backend: tf.getBackend(), threads: info.threads, onednn: info.onednn };
  }
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
  const reason = loadError() ?? 'the native addon did not load';
  if (!warned) {
    warned = true;
    process.stderr.write(
      `fundus: native engine unavailable (${reason}); running on the slow JS CPU backend. ` +
        'Enable it with: apt-get install libdnnl-dev && npm run build:native\n',
    );
  }
  return { backend: tf.getBackend(), threads: 1, reason };
}

export { configuredThreads };
