// Time per kernel of a computation (tf.profile), aggregated by kernel name: the numbers that decide which
// kernels are worth running natively.
import * as tf from '@tensorflow/tfjs-core';

export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

export async function profileKernels(fn: () => unknown | Promise<unknown>): Promise<{ totalMs: number; kernels: KernelTime[] }> {
  const start = performance.now();
  const info = await tf.profile(fn as () => tf.TensorContainer);
  const totalMs = performance.now() - start;
  const byName = new Map<string, KernelTime>();
  for (const k of info.kernels) {
    const entry = byName.get(k.name) ?? { kernel: k.name, calls: 0, ms: 0 };
    entry.calls += 1;
    entry.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    byName.set(k.name, entry);
  }
  return { totalMs, kernels: [...byName.values()].sort((a, b) => b.ms - a.ms) };
}

export function formatProfile(p: { totalMs: number; kernels: KernelTime[] }, top = 20): string {
  const lines = [`  total ${p.totalMs.toFixed(1)} ms (kernels ${p.kernels.reduce((s, k) => s + k.ms, 0).toFixed(1)} ms)`];
  for (const k of p.kernels.slice(0, top)) {
    lines.push(`  ${k.kernel.padEnd(24)} ${String(k.calls).padStart(5)} calls ${k.ms.toFixed(1).padStart(9)} ms`);
  }
  return lines.join('\n');
}
