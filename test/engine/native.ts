// Shared by the engine tests: run the same computation on the native and JS CPU backends and compare.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers'; // registers the gradients
import { initEngine, isNativeAvailable } from '../../src/engine/index.js';
import { loadAddon, loadError, type NativeAddon } from '../../src/engine/addon.js';

/** Skip reason when the addon is not built; in CI a missing addon is a failure, not a skip. */
export async function nativeOrSkip(): Promise<string | false> {
  if (isNativeAvailable()) {
    await initEngine();
    return false;
  }
  if (process.env.CI) throw new Error(`CI: the native engine must be built for these tests (${loadError()})`);
  return `native addon not built (${loadError()}); run npm run build:native`;
}

/** Deterministic pseudo-random values in [lo, hi). */
export function randomValues(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + ((s >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}

/** Runs fn on a backend with inputs built there from the same arrays; returns every output's values. */
export function runOn(backend: string, inputs: { shape: number[]; values: Float32Array }[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Float32Array[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.values, i.shape, 'float32'));
    const out = fn(...xs);
    return (Array.isArray(out) ? out : [out]).map((t) => t.dataSync() as Float32Array);
  });
}

/** max |a - b| / max |b|: the error relative to the result's scale. */
export function relativeError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Infinity;
    if (Number.isNaN(a[i])) continue;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Counts the addon's kernel calls made while fn runs (proves the native path ran, not the JS fallback). */
export function countNativeCalls<T>(fn: () => T): { result: T; calls: Record<string, number> } {
  const addon = loadAddon() as NativeAddon & Record<string, unknown>;
  const calls: Record<string, number> = {};
  const originals = new Map<string, unknown>();
  for (const [name, f] of Object.entries(addon)) {
    if (typeof f !== 'function' || name === 'info') continue;
    originals.set(name, f);
    addon[name] = (...args: unknown[]) => {
      const r = (f as (...a: unknown[]) => unknown)(...args);
      if (r !== false) calls[name] = (calls[name] ?? 0) + 1; // false = declined, the JS kernel ran
      return r;
    };
  }
  try {
    return { result: fn(), calls };
  } finally {
    for (const [name, f] of originals) addon[name] = f;
  }
}

export const TOLERANCE = 1e-4;
