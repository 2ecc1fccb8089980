import { InputError } from '../util/errors.js';
import type { CamExplainer, CamInput, CamMethod, CamResult, CamTarget } from './cam.js';
import { normalizeHeatmap, resizeHeatmap, type Heatmap } from './heatmap.js';

/**
 * LayerCAM's amplification of a layer's map before fusion (Jiang et al. 2021, eq. 5; torchcam's `_scale_cams`):
 * tanh(γ·M / max M). Shallow layers give weak, spiky maps; the tanh lifts their moderate values so that the fused
 * map keeps their detail instead of only their few peaks.
 */
export const FUSION_GAMMA = 2;

/**
 * Fuses maps of the same image and class from several layers: each scaled by tanh(γ·M / max M), upsampled
 * (bilinearly, half-pixel centres) to the finest map's grid, and combined by the element-wise maximum, as LayerCAM
 * fuses its stages. The result is in [0, 1) wherever any layer saw evidence; an all-zero layer adds nothing.
 */
export function fuseHeatmaps(maps: Heatmap[], gamma = FUSION_GAMMA): Heatmap {
  if (maps.length === 0) throw new Error('fuseHeatmaps needs at least one map');
  const finest = maps.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
  const { width, height } = finest;
  const out = new Float32Array(width * height);
  for (const m of maps) {
    let max = 0;
    for (const v of m.data) if (v > max) max = v;
    if (!(max > 0)) continue;
    const up = m.width === width && m.height === height ? m : resizeHeatmap(m, width, height);
    for (let i = 0; i < out.length; i++) {
      const v = Math.tanh((gamma * Math.max(0, up.data[i])) / max);
      if (v > out[i]) out[i] = v;
    }
  }
  return { width, height, data: out };
}

/**
 * Explains with several target layers at once and fuses their maps (`fuseHeatmaps`): the deep layer says which
 * region matters for the class, the shallower ones (stride 16, 8) draw it at a finer grain. Every layer costs one
 * more backward pass (gradient methods) or one more set of masked forward passes (Score-CAM).
 */
export class FusedExplainer {
  readonly numClasses: number;

  constructor(readonly parts: CamExplainer[]) {
    if (parts.length < 2) throw new InputError('layer fusion needs at least two layers');
    this.numClasses = parts[0].numClasses;
  }

  /** The layers, deepest last, joined by '+' (how reports name a fused map). */
  get layerName(): string {
    return this.parts.map((p) => p.layerName).join('+');
  }

  /** The fused map's grid: the finest layer's. */
  get cells(): [number, number] {
    return this.parts.map((p) => p.cells).reduce((a, b) => (b[0] * b[1] > a[0] * a[1] ? b : a));
  }

  predict(images: CamInput[]): Float32Array {
    return this.parts[0].predict(images);
  }

  explain(images: CamInput[], targets: CamTarget[], method: CamMethod): CamResult[] {
    const perLayer = this.parts.map((p) => p.explain(images, targets, method));
    return targets.map((_, i) => {
      const raw = fuseHeatmaps(perLayer.map((results) => results[i].raw));
      // Score and probability do not depend on the layer: the first layer's stand for all.
      return { ...perLayer[0][i], raw, heatmap: normalizeHeatmap(raw) };
    });
  }
}
