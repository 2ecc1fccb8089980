// Glue shared by the native kernels: typed-array access without copies, outputs, and the JS fallback.
import { getKernel, util } from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { loadAddon, type NativeAddon } from '../addon.js';
import { bufferPool } from '../pool.js';

export type Backend = MathBackendCPU;

export interface KernelArgs<I = NamedTensorInfoMap, A = NamedAttrMap> {
  inputs: I;
  backend: Backend;
  attrs?: A;
}

export function addon(): NativeAddon {
  const a = loadAddon();
  if (!a) throw new Error('fundus native engine: the addon is not loaded');
  return a;
}

/** The tensor's own Float32Array (the same memory the CPU backend holds), or null when it is not float32 data. */
export function f32(backend: Backend, t: TensorInfo | undefined | null): Float32Array | null {
  if (!t || t.dtype !== 'float32') return null;
  const values = backend.data.get(t.dataId).values;
  return values instanceof Float32Array && values.length === util.sizeFromShape(t.shape) ? values : null;
}

/** An output array for a native kernel (recycled for large tensors; contents undefined until written). */
export function allocFloat32(n: number): Float32Array {
  return bufferPool.alloc(n);
}

export function output(backend: Backend, shape: number[], values: Float32Array): TensorInfo {
  return backend.makeTensorInfo(shape, 'float32', values);
}

/** Runs the JS CPU kernel of the same name on this backend (both store tensors the same way). */
export function cpuKernel(name: string): KernelFunc {
  const k = getKernel(name, 'cpu');
  if (!k) throw new Error(`fundus native engine: no cpu kernel ${name}`);
  return k.kernelFunc;
}

export function fallback(name: string, args: KernelArgs<unknown, unknown>): TensorInfo {
  return cpuKernel(name)(args as Parameters<KernelFunc>[0]) as TensorInfo;
}
