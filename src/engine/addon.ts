// Loads the oneDNN addon built from native/ (by `npm ci` or `npm run build:native`). Absent addon = null, never
// an exception: fundus then runs on the JS CPU backend.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';

export interface AddonInfo {
  threads: number;
  onednn: string;
  cpuRuntime: string;
  cachedPrimitives: number;
  scratchBytes: number;
  /** Live weight packs (conv2dPack) and the bytes of packed weights they hold (absent from older builds). */
  weightPacks?: number;
  packedWeightBytes?: number;
}

/** The C++ side (native/src/*.cc). Every kernel returns false when it cannot handle the case (the caller then
 * runs the JS kernel) and throws only on programming errors (wrong array types or lengths). */
export interface NativeAddon {
  info(): AddonInfo;
  setThreads(n: number): number;
  clearCaches(): void;
  /**
   * With a residual (y's shape): y = activation(conv(x) + bias + residual). With a pack (conv2dPack's id), w must be
   * the pack's constant weights: they are reordered into the primitive's layout on the first such call and reused.
   */
  conv2dForward(x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array, p: number[], alpha: number, residual?: Float32Array | null, pack?: number): boolean;
  /** A new, empty weight pack (an id); conv2dReleasePack frees it and what it holds. Absent from older builds. */
  conv2dPack?(): number;
  conv2dReleasePack?(pack: number): boolean;
  /**
   * MobileNetV2's inverted-residual block in one call: y = project(depthwise(expand(x))) with each convolution's bias
   * and activation (pe, pd, pp: their conv2dForward parameters) and, with a residual, that tensor added before the
   * projection's activation; the expansion and the depthwise convolution run as one oneDNN primitive on a blocked
   * layout. packs: the three filters' conv2dPack ids (null where a filter has none). Absent from older builds.
   */
  invertedResidualForward?(
    x: Float32Array,
    expandFilter: Float32Array,
    expandBias: Float32Array,
    dwFilter: Float32Array,
    dwBias: Float32Array,
    projectFilter: Float32Array,
    projectBias: Float32Array | null,
    residual: Float32Array | null,
    y: Float32Array,
    pe: number[],
    pd: number[],
    pp: number[],
    packs?: (number | null)[],
  ): boolean;
  conv2dBackwardData(dy: Float32Array, w: Float32Array, dx: Float32Array, p: number[]): boolean;
  conv2dBackwardWeights(x: Float32Array, dy: Float32Array, dw: Float32Array, p: number[]): boolean;
  poolForward(kind: number, x: Float32Array, y: Float32Array, p: number[]): boolean;
  poolBackward(kind: number, dy: Float32Array, x: Float32Array | null, dx: Float32Array, p: number[]): boolean;
  batchMatMul(a: Float32Array, b: Float32Array, c: Float32Array, p: number[]): boolean;
  binary(op: number, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], out: Float32Array, outShape: number[], scale?: number): boolean;
  unary(op: number, x: Float32Array, out: Float32Array, n: number, alpha: number): boolean;
  activationGrad(op: number, dy: Float32Array, x: Float32Array, out: Float32Array, n: number): boolean;
  batchNorm(
    x: Float32Array,
    n: number,
    mean: Float32Array,
    variance: Float32Array,
    offset: Float32Array | null,
    scale: Float32Array | null,
    eps: number,
    out: Float32Array,
  ): boolean;
  /** Per-channel mean and biased variance of a channels-last tensor of n values and c channels. */
  batchMoments(x: Float32Array, n: number, c: number, mean: Float32Array, variance: Float32Array): boolean;
  batchNormGradStats(x: Float32Array, dy: Float32Array, mean: Float32Array, n: number, c: number, sumDy: Float32Array, sumDyXmu: Float32Array): boolean;
  tile(x: Float32Array, shape: number[], reps: number[], out: Float32Array): boolean;
  pad(x: Float32Array, shape: number[], before: number[], after: number[], value: number, out: Float32Array): boolean;
  slice(x: Float32Array, shape: number[], begin: number[], size: number[], out: Float32Array): boolean;
  /** 7 arrays per variable: gradient, m, v, value, then m', v', value' (written). */
  adamUpdate(arrays: Float32Array[], constants: Float32Array): boolean;
  batchNormGradX(x: Float32Array, dy: Float32Array, mean: Float32Array, a: Float32Array, b: Float32Array, k: Float32Array, n: number, c: number, out: Float32Array, reluMask: boolean): boolean;
  reduce(op: number, x: Float32Array, shape: number[], axes: number[], out: Float32Array): boolean;
}

export const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/fundus_native.node', import.meta.url));

let cached: { addon: NativeAddon | null; error: string | null } | undefined;

/**
 * Functions an addon built from older sources lacks. batchMoments came with the residual form of conv2dForward, which
 * an older addon would silently ignore (a wrong prediction, not an error): such an addon is not used. (One without
 * conv2dPack is: packed-weights.ts then packs nothing, and the weights are reordered on every call as before; one
 * without invertedResidualForward runs MobileNetV2's blocks as their three convolutions.)
 */
const NEWEST_FUNCTIONS = ['batchMoments'] as const;

/** Thread count: FUNDUS_THREADS if set, else every core this process may use. */
export function configuredThreads(): number {
  const env = process.env.FUNDUS_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (Number.isInteger(n) && n > 0) return n;
  }
  return availableParallelism();
}

/** The addon, or null with the reason in loadError(). FUNDUS_NATIVE=0 disables it (to compare with JS). */
export function loadAddon(): NativeAddon | null {
  if (cached) return cached.addon;
  if (process.env.FUNDUS_NATIVE === '0') {
    cached = { addon: null, error: 'disabled by FUNDUS_NATIVE=0' };
  } else if (!existsSync(ADDON_PATH)) {
    cached = { addon: null, error: `${ADDON_PATH} is not built` };
  } else {
    try {
      const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
      const missing = NEWEST_FUNCTIONS.filter((f) => typeof addon[f] !== 'function');
      if (missing.length > 0) {
        cached = { addon: null, error: `${ADDON_PATH} was built from older sources (no ${missing.join(', ')}); run npm run build:native` };
      } else {
        addon.setThreads(configuredThreads());
        cached = { addon, error: null };
      }
    } catch (e) {
      cached = { addon: null, error: (e as Error).message };
    }
  }
  return cached.addon;
}

/** Whether loadAddon() has run in this process (its outcome is then fixed). */
export function addonLoaded(): boolean {
  return cached !== undefined;
}

export function loadError(): string | null {
  loadAddon();
  return cached?.error ?? null;
}
