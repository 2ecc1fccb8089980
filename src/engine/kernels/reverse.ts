// Reverse (tf.reverse: flip test-time augmentation, flips in training) as a strided block copy. tfjs-backend-cpu's
// kernel moves one element at a time through TensorBuffer index arithmetic: 8.7 s of CPU for one batch of 16
// photographs at 448 px, more than the network's two passes over it. A copy is bound by memory, so plain JS
// typed-array code is as fast as crossing into C++ would be.
import { util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, f32, fallback, output, type KernelArgs } from './util.js';

/** Below this many values a block is copied by a loop rather than `TypedArray.set` (which allocates a view). */
const SET_MIN_BLOCK = 32;

function reverse(args: KernelArgs<{ x: TensorInfo }, { dims: number | number[] }>): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const xv = f32(backend, x);
  const shape = x.shape;
  const axes = shape.length > 0 ? util.parseAxisParam(attrs!.dims, shape).filter((a) => shape[a] > 1) : [];
  if (!xv || axes.length === 0) return fallback('Reverse', args);
  // Every axis after the last reversed one is copied as one contiguous block; the axes up to it are walked.
  const last = Math.max(...axes);
  const block = util.sizeFromShape(shape.slice(last + 1));
  const outer = shape.slice(0, last + 1);
  const strides = outer.map((_, i) => util.sizeFromShape(shape.slice(i + 1)));
  const reversed = outer.map((_, i) => axes.includes(i));
  const out = allocFloat32(xv.length);
  const index = new Array<number>(outer.length).fill(0);
  const runs = util.sizeFromShape(outer);
  for (let r = 0, dst = 0; r < runs; r++, dst += block) {
    let src = 0;
    for (let i = 0; i < outer.length; i++) src += (reversed[i] ? outer[i] - 1 - index[i] : index[i]) * strides[i];
    if (block >= SET_MIN_BLOCK) out.set(xv.subarray(src, src + block), dst);
    else for (let k = 0; k < block; k++) out[dst + k] = xv[src + k];
    for (let i = outer.length - 1; i >= 0 && ++index[i] === outer[i]; i--) index[i] = 0;
  }
  return output(backend, [...shape], out);
}

export const reverseKernels: Omit<KernelConfig, 'backendName'>[] = [{ kernelName: 'Reverse', kernelFunc: reverse as never }];
