import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { configuredThreads, loadAddon, loadError } from './addon.js';
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

/** Chooses the fastest available tfjs backend. Every command that runs a model calls this first. */
export async function initEngine(): Promise<EngineInfo> {
  const addon = loadAddon();
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
