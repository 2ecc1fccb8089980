// BatchMatMul and _FusedMatMul through oneDNN's sgemm (native/src/matmul.cc).
import { broadcast_util, util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, cpuKernel, f32, fallback, output, type Backend, type KernelArgs } from './util.js';
import { UNARY } from './elementwise.js';

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  activation?: string;
  leakyreluAlpha?: number;
}

/** a·b with tfjs's semantics (batch i uses a[i % batchA], b[i % batchB]), or null when not handled natively. */
function nativeMatMul(backend: Backend, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo | null {
  const av = f32(backend, a);
  const bv = f32(backend, b);
  if (!av || !bv || a.shape.length < 2 || b.shape.length < 2) return null;
  const ar = a.shape.length;
  const br = b.shape.length;
  const k = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = transposeB ? b.shape[br - 1] : b.shape[br - 2];
  const m = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
  const n = transposeB ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb || m === 0 || n === 0 || k === 0) return null;
  const batchA = util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = util.sizeFromShape(b.shape.slice(0, -2));
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  const outShape = broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)).concat([m, n]);
  const batch = Math.max(batchA, batchB);
  const c = allocFloat32(batch * m * n);
  if (!addon().batchMatMul(av, bv, c, [batch, batchA, batchB, m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0])) return null;
  return output(backend, outShape, c);
}

function batchMatMul(args: KernelArgs<{ a: TensorInfo; b: TensorInfo }, MatMulAttrs>): TensorInfo {
  const { inputs: { a, b }, backend, attrs } = args;
  return nativeMatMul(backend, a, b, attrs!.transposeA, attrs!.transposeB) ?? fallback('BatchMatMul', args);
}

const FUSED_ACTIVATIONS: Partial<Record<string, number>> = {
  relu: UNARY.relu, relu6: UNARY.relu6, elu: UNARY.elu, leakyrelu: UNARY.leakyRelu, sigmoid: UNARY.sigmoid,
};

function fusedMatMul(
  args: KernelArgs<{ a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo }, MatMulAttrs>,
): TensorInfo {
  const { inputs: { a, b, bias, preluActivationWeights }, backend, attrs } = args;
  const activation = attrs!.activation ?? 'linear';
  const biasValues = bias ? f32(backend, bias) : null;
  const supported = (!bias || biasValues) && (activation === 'linear' || activation === 'prelu' || FUSED_ACTIVATIONS[activation] !== undefined);
  const product = supported ? nativeMatMul(backend, a, b, attrs!.transposeA, attrs!.transposeB) : null;
  if (!product) return fallback('_FusedMatMul', args);
  const values = f32(backend, product)!;
  let result = product;
  if (bias && biasValues) {
    const outShape = broadcast_util.assertAndGetBroadcastShape(product.shape, bias.shape);
    if (outShape.length === product.shape.length && util.arraysEqual(outShape, product.shape)) {
      addon().binary(0, values, product.shape, biasValues, bias.shape, values, product.shape); // in place
    } else {
      result = cpuKernel('Add')({ inputs: { a: product, b: bias }, backend }) as TensorInfo;
      backend.disposeIntermediateTensorInfo(product);
    }
  }
  if (activation === 'prelu') {
    const activated = cpuKernel('Prelu')({ inputs: { x: result, alpha: preluActivationWeights! }, backend }) as TensorInfo;
    backend.disposeIntermediateTensorInfo(result);
    return activated;
  }
  const code = FUSED_ACTIVATIONS[activation];
  if (code !== undefined) {
    const v = f32(backend, result)!;
    addon().unary(code, v, v, v.length, attrs!.leakyreluAlpha ?? 0.2);
  }
  return result;
}

export const matmulKernels: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'BatchMatMul', kernelFunc: batchMatMul as never },
  { kernelName: '_FusedMatMul', kernelFunc: fusedMatMul as never },
];
