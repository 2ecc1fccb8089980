import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

export interface EngineInfo {
  backend: string;
  threads: number;
}

/** Chooses the fastest available tfjs backend. Every command that runs a model calls this first. */
export async function initEngine(): Promise<EngineInfo> {
  await tf.setBackend('cpu');
  await tf.ready();
  return { backend: tf.getBackend(), threads: 1 };
}
