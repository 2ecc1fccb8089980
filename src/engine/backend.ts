// The `native` tfjs backend: the JS CPU backend's tensor storage and kernels, with the heavy kernels replaced by
// oneDNN ones. Tensors stay plain typed arrays, so native kernels read and write them in place.
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { KernelConfig } from '@tensorflow/tfjs-core';
import { convKernels } from './kernels/conv.js';
import { poolKernels } from './kernels/pool.js';
import { matmulKernels } from './kernels/matmul.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { reduceKernels } from './kernels/reduce.js';
import { batchNormKernels } from './kernels/batchnorm.js';

export const NATIVE_BACKEND = 'native';

export class NativeBackend extends MathBackendCPU {
  constructor() {
    super();
    // The CPU backend advises installing tfjs-node on its first write; that advice does not apply here.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }
}

/** The kernels that run natively (everything else is the CPU backend's JS kernel). */
export const NATIVE_KERNELS: Omit<KernelConfig, 'backendName'>[] = [
  ...convKernels,
  ...poolKernels,
  ...matmulKernels,
  ...batchNormKernels,
  ...elementwiseKernels,
  ...reduceKernels,
];

let registered = false;

/** Registers the backend and its kernels once; the caller has already checked that the addon loads. */
export function registerNativeBackend(): void {
  if (registered) return;
  registered = true;
  tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 2);
  const native = new Map(NATIVE_KERNELS.map((k) => [k.kernelName, k]));
  for (const k of tf.getKernelsForBackend('cpu')) {
    tf.registerKernel({ ...k, ...(native.get(k.kernelName) ?? {}), backendName: NATIVE_BACKEND });
  }
  for (const [name, k] of native) {
    if (!tf.getKernel(name, NATIVE_BACKEND)) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
}
