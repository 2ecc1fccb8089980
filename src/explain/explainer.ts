import type * as tfl from '@tensorflow/tfjs-layers';
import { join } from 'node:path';
import { METADATA_JSON, type FundusModel } from '../models/io.js';
import type { ModelMetadata, TestTimeAugmentation } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { CAM_METHODS, CamExplainer, DEFAULT_CAM_METHOD, isCamMethod, type CamInput, type CamMethod, type CamOptions } from './cam.js';
import { ClassLayerExplainer } from './class-layers.js';
import { FusedExplainer } from './fusion.js';
import { findTargetLayer } from '../models/graph.js';
import type { Heatmap } from './heatmap.js';

/**
 * What explains a model's class scores: one target layer (`CamExplainer`), several fused (`FusedExplainer`), or each
 * class at the layer its model records for it (`ClassLayerExplainer`).
 */
export type Explainer = CamExplainer | FusedExplainer | ClassLayerExplainer;

const explainers = new WeakMap<tfl.LayersModel, Map<string, Explainer>>();

/** The layer names of a `CamOptions.layer`: `undefined` for the automatic choice. */
export function layerNames(layer: string | string[] | undefined): string[] | undefined {
  if (layer === undefined) return undefined;
  const names = (Array.isArray(layer) ? layer : layer.split(/[,+]/)).map((n) => n.trim()).filter(Boolean);
  if (names.length === 0) throw new InputError('no layer named (give a layer name, or several joined by commas)');
  if (new Set(names).size !== names.length) throw new InputError(`a layer is named twice in ${names.join(', ')}`);
  return names;
}

/** How a model's heatmaps are made when no method or layer is named. */
export interface DefaultExplanation {
  method: CamMethod;
  /** The target layer (or layers joined by ',' or '+', fused); absent: the automatic choice (`findTargetLayer`). */
  layer?: string;
  /** The measurement that chose them, as fundus.json records it; absent for fundus's global default. */
  chosenBy?: string;
}

/**
 * The heatmap method and layer a model is explained with when none is named: the ones its fundus.json records
 * (`explanation`, chosen by measuring localisation on that model, see docs/explain-localisation.md), else fundus's
 * global default, DEFAULT_CAM_METHOD at the automatic target layer. Every place that makes heatmaps (`fundus
 * explain`, `predict --heatmaps`, the queue's workers, the HTTP API and the viewer) starts from it; a method or layer
 * named explicitly replaces its part.
 *
 * With `classIndex`, that class's: the layer its model records for it (`explanation.classes`), if any.
 *
 * Throws an InputError naming the fundus.json file when the recorded method is not a CAM method, a class named is not
 * the model's, or, given the model's network, when a recorded layer is not one of its spatial layers.
 *
 * @example
 * const { method, layer } = defaultExplanation(model); // models/default: gradcam at block_12_add
 */
export function defaultExplanation(model: Pick<FundusModel, 'dir' | 'metadata'> & { network?: tfl.LayersModel }, classIndex?: number): DefaultExplanation {
  const recorded = model.metadata.explanation;
  if (!recorded) return { method: DEFAULT_CAM_METHOD };
  const file = join(model.dir, METADATA_JSON);
  if (!isCamMethod(recorded.method)) {
    throw new InputError(`"explanation.method": unknown method "${recorded.method}" (known: ${CAM_METHODS.join(', ')})`, { file });
  }
  const checkLayer = (layer: string, field: string) => {
    try {
      const names = layerNames(layer) as string[];
      if (model.network) for (const name of names) findTargetLayer(model.network, name);
    } catch (err) {
      if (err instanceof InputError) throw new InputError(`"${field}": ${err.message}`, { file });
      throw err;
    }
  };
  if (recorded.layer !== undefined) checkLayer(recorded.layer, 'explanation.layer');
  for (const [name, c] of Object.entries(recorded.classes ?? {})) {
    if (!model.metadata.classes.includes(name)) {
      throw new InputError(`"explanation.classes": the model has no class "${name}" (classes: ${model.metadata.classes.join(', ')})`, { file });
    }
    checkLayer(c.layer, `explanation.classes.${name}.layer`);
  }
  const own = classIndex !== undefined ? recorded.classes?.[model.metadata.classes[classIndex]] : undefined;
  if (own) return { method: recorded.method, layer: own.layer, chosenBy: own.chosenBy };
  return { method: recorded.method, ...(recorded.layer !== undefined ? { layer: recorded.layer } : {}), chosenBy: recorded.chosenBy };
}

/** The explainer that makes class `classIndex`'s maps: the class's own layer's where its model records one. */
export function classExplainer(explainer: Explainer, classIndex: number): CamExplainer | FusedExplainer {
  return explainer instanceof ClassLayerExplainer ? explainer.explainerOf(classIndex) : explainer;
}

/** The layer an explainer makes class `classIndex`'s maps at (joined by '+' when fused). */
export function layerOfClass(explainer: Explainer, classIndex: number): string {
  return classExplainer(explainer, classIndex).layerName;
}

/** The test-time augmentation a model's maps are made through: the one named, else the model's own (`inference.tta`). */
export function explanationTta(metadata: Pick<ModelMetadata, 'inference'>, named?: TestTimeAugmentation): TestTimeAugmentation {
  return named ?? metadata.inference?.tta ?? 'none';
}

/**
 * The (cached) explainer of a fundus model for a target layer, or for several fused; without a layer, the model's
 * default layer (`defaultExplanation`), else the last convolutional block at stride 8 or finer. Without a layer, a
 * model that records layers of their own for some classes (`explanation.classes`) is explained at those for them.
 * Without `tta`, a model that predicts with flip test-time augmentation is explained through it too (`CamOptions.tta`).
 */
export function explainerFor(model: FundusModel, options: CamOptions = {}): Explainer {
  const opts: CamOptions = { ...options, tta: explanationTta(model.metadata, options.tta) };
  const own = opts.layer === undefined ? Object.entries(model.metadata.explanation?.classes ?? {}) : [];
  if (own.length === 0) return layerExplainer(model, opts);
  const key = `${opts.tta}:classes:${own.map(([name, c]) => `${name}=${c.layer}`).join(';')}`;
  const cached = explainers.get(model.network)?.get(key);
  if (cached) return cached;
  defaultExplanation(model);
  const byClass = new Map(own.map(([name, c]) => [model.metadata.classes.indexOf(name), layerExplainer(model, { ...opts, layer: c.layer }) as CamExplainer | FusedExplainer]));
  const routed = new ClassLayerExplainer(layerExplainer(model, opts) as CamExplainer | FusedExplainer, byClass, model.metadata.classes);
  explainers.get(model.network)!.set(key, routed);
  return routed;
}

/** The (cached) explainer of one layer, or of several fused, for every class. */
function layerExplainer(model: FundusModel, opts: CamOptions): CamExplainer | FusedExplainer {
  let perLayer = explainers.get(model.network);
  if (!perLayer) explainers.set(model.network, (perLayer = new Map()));
  const names = layerNames(opts.layer ?? defaultExplanation(model).layer);
  const key = `${opts.tta ?? 'none'}:${names?.join('+') ?? ''}`;
  let e = perLayer.get(key);
  if (!e) {
    const one = (layer?: string) => new CamExplainer(model.network, model.metadata.activation, { ...opts, layer });
    e = names && names.length > 1 ? new FusedExplainer(names.map(one)) : one(names?.[0]);
    perLayer.set(key, e);
  }
  return e as CamExplainer | FusedExplainer;
}

/**
 * The heatmap of one class for one preprocessed image (see `CamExplainer.explain` for batches), by default with the
 * model's own method and layer (`defaultExplanation`).
 */
export async function computeHeatmap(
  model: FundusModel,
  image: CamInput,
  classIndex: number,
  method: CamMethod = defaultExplanation(model).method,
  opts: CamOptions = {},
): Promise<Heatmap> {
  return explainerFor(model, opts).explain([image], [{ image: 0, classIndex }], method)[0].heatmap;
}
