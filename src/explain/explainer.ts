import type * as tfl from '@tensorflow/tfjs-layers';
import type { FundusModel } from '../models/io.js';
import { InputError } from '../util/errors.js';
import { CamExplainer, DEFAULT_CAM_METHOD, type CamInput, type CamMethod, type CamOptions } from './cam.js';
import { FusedExplainer } from './fusion.js';
import type { Heatmap } from './heatmap.js';

/** What explains a model's class scores: one target layer (`CamExplainer`) or several fused (`FusedExplainer`). */
export type Explainer = CamExplainer | FusedExplainer;

const explainers = new WeakMap<tfl.LayersModel, Map<string, Explainer>>();

/** The layer names of a `CamOptions.layer`: `undefined` for the automatic choice. */
export function layerNames(layer: string | string[] | undefined): string[] | undefined {
  if (layer === undefined) return undefined;
  const names = (Array.isArray(layer) ? layer : layer.split(/[,+]/)).map((n) => n.trim()).filter(Boolean);
  if (names.length === 0) throw new InputError('no layer named (give a layer name, or several joined by commas)');
  if (new Set(names).size !== names.length) throw new InputError(`a layer is named twice in ${names.join(', ')}`);
  return names;
}

/**
 * The (cached) explainer of a fundus model for a target layer, or for several fused; without a layer, the last
 * convolutional block.
 */
export function explainerFor(model: FundusModel, opts: CamOptions = {}): Explainer {
  let perLayer = explainers.get(model.network);
  if (!perLayer) explainers.set(model.network, (perLayer = new Map()));
  const names = layerNames(opts.layer);
  const key = names?.join('+') ?? '';
  let e = perLayer.get(key);
  if (!e) {
    const one = (layer?: string) => new CamExplainer(model.network, model.metadata.activation, { ...opts, layer });
    e = names && names.length > 1 ? new FusedExplainer(names.map(one)) : one(names?.[0]);
    perLayer.set(key, e);
  }
  return e;
}

/** The heatmap of one class for one preprocessed image (see `CamExplainer.explain` for batches). */
export async function computeHeatmap(
  model: FundusModel,
  image: CamInput,
  classIndex: number,
  method: CamMethod = DEFAULT_CAM_METHOD,
  opts: CamOptions = {},
): Promise<Heatmap> {
  return explainerFor(model, opts).explain([image], [{ image: 0, classIndex }], method)[0].heatmap;
}
