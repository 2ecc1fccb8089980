// The `native` tfjs backend: the JS CPU backend's tensor storage and kernels, with the heavy kernels replaced by
// oneDNN ones. Tensors stay plain typed arrays, so native kernels read and write them in place.
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { BackendValues, DataId, DataType, KernelConfig } from '@tensorflow/tfjs-core';
import { bufferPool } from './pool.js';
import { convKernels } from './kernels/conv.js';
import { poolKernels } from './kernels/pool.js';
import { matmulKernels } from './kernels/matmul.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { reduceKernels } from './kernels/reduce.js';
import { reverseKernels } from './kernels/reverse.js';
import { batchNormKernels } from './kernels/batchnorm.js';
import { GRADIENT_KERNELS } from './gradients.js';
import { NATIVE_BACKEND_NAME } from './names.js';
import { ADAM_KERNELS } from './adam.js';
import { BATCH_NORM_GRADIENT_KERNELS } from './batchnorm-gradient.js';
import { MOMENTS_KERNELS } from './moments.js';

export const NATIVE_BACKEND = NATIVE_BACKEND_NAME;

export class NativeBackend extends MathBackendCPU {
  constructor() {
    super();
    // The CPU backend advises installing tfjs-node on its first write (a private flag); that advice does not apply here.
    if ('firstUse' in this) (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  // Reference counting for recycled buffers (see pool.ts): every tensor data entry that refers to a pooled
  // buffer holds a reference, and the buffer goes back to the pool when the last entry is disposed.
  override write(values: BackendValues, shape: number[], dtype: DataType): DataId {
    const id = super.write(values, shape, dtype);
    bufferPool.retain(values);
    return id;
  }

  override move(dataId: DataId, values: BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    super.move(dataId, values, shape, dtype, refCount);
    bufferPool.retain(values);
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const result = super.disposeData(dataId, force);
    if (values !== undefined && !this.data.has(dataId)) bufferPool.release(values);
    return result;
  }

  /** Copies pooled data, so that what user code holds is never recycled under it. */
  override readSync(dataId: DataId): BackendValues {
    const values = super.readSync(dataId);
    return bufferPool.isPooled(values) ? values.slice() : values;
  }
}

/**
 * The kernels that run natively (everything else is the CPU backend's JS kernel), and Reverse, a JS block copy in
 * place of the CPU backend's element-by-element one (kernels/reverse.ts).
 */
export const NATIVE_KERNELS: Omit<KernelConfig, 'backendName'>[] = [
  ...convKernels,
  ...poolKernels,
  ...matmulKernels,
  ...batchNormKernels,
  ...elementwiseKernels,
  ...reduceKernels,
  ...reverseKernels,
  ...GRADIENT_KERNELS,
  ...ADAM_KERNELS,
  ...BATCH_NORM_GRADIENT_KERNELS,
  ...MOMENTS_KERNELS,
];

/** The tfjs kernels the native backend replaces, and falls back to (its own kernels are named Fundus…). */
export const REPLACED_KERNELS = [...new Set(NATIVE_KERNELS.map((k) => k.kernelName).filter((n) => !n.startsWith('Fundus')))];

/** Registers the backend and its kernels (the caller has checked that the addon loads); returns how to remove them. */
export function registerNativeBackend(): () => void {
  tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 2);
  const native = new Map(NATIVE_KERNELS.map((k) => [k.kernelName, k]));
  for (const k of tf.getKernelsForBackend('cpu')) {
    tf.registerKernel({ ...k, ...(native.get(k.kernelName) ?? {}), backendName: NATIVE_BACKEND });
  }
  for (const [name, k] of native) {
    if (!tf.getKernel(name, NATIVE_BACKEND)) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  return () => {
    for (const k of tf.getKernelsForBackend(NATIVE_BACKEND)) tf.unregisterKernel(k.kernelName, NATIVE_BACKEND);
    tf.removeBackend(NATIVE_BACKEND);
  };
}
