// Sum / Mean / Max / Min reductions natively (native/src/reduce.cc); tfjs's JS versions transpose first.
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, f32, fallback, output, type KernelArgs } from './util.js';
import { meanAxes } from './notes.js';

const OPS = { Sum: 0, Mean: 1, Max: 2, Min: 3 } as const;

function makeReduce(name: keyof typeof OPS) {
  return (args: KernelArgs<{ x: TensorInfo }, { axis?: number | number[] | null; reductionIndices?: number | number[] | null; keepDims?: boolean }>): TensorInfo => {
    const { inputs: { x }, backend, attrs } = args;
    const xv = f32(backend, x);
    if (xv && xv.length > 0) {
      // tfjs passes axis null for "all axes"; Max/Min name it reductionIndices.
      const axes = util.parseAxisParam((attrs?.axis ?? attrs?.reductionIndices ?? null) as number | number[], x.shape);
      const [outShape] = backend_util.computeOutAndReduceShapes(x.shape, axes);
      const out = allocFloat32(util.sizeFromShape(outShape));
      const sorted = [...new Set(axes)].sort((p, q) => p - q);
      if (addon().reduce(OPS[name], xv, x.shape, sorted, out)) {
        const result = output(backend, attrs?.keepDims ? backend_util.expandShapeToKeepDim(outShape, axes) : outShape, out);
        if (name === 'Mean') meanAxes.set(result.dataId, sorted);
        return result;
      }
    }
    return fallback(name, args);
  };
}

export const reduceKernels: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'Sum', kernelFunc: makeReduce('Sum') as never },
  { kernelName: 'Mean', kernelFunc: makeReduce('Mean') as never },
  { kernelName: 'Max', kernelFunc: makeReduce('Max') as never },
  { kernelName: 'Min', kernelFunc: makeReduce('Min') as never },
];
