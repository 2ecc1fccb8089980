// Attributes of a kernel call that tfjs's tape does not keep (it keeps inputs, outputs and saved tensors), noted
// per output data id by the native kernels, for the tape-level batch-norm fusion (src/engine/fusion.ts).
import type { DataId } from '@tensorflow/tfjs-core';

/** Reduction axes of a native Mean, sorted (keepDims false or true). */
export const meanAxes = new WeakMap<DataId, number[]>();
/** varianceEpsilon of a native FusedBatchNorm. */
export const batchNormEpsilon = new WeakMap<DataId, number>();
