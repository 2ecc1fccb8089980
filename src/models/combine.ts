import * as tfl from '@tensorflow/tfjs-layers';
import { buildLogits } from './architectures.js';
import { InputError } from '../util/errors.js';

type SymbolicTensor = tfl.SymbolicTensor;

/** A layer-name-safe short name of a class, e.g. `diabetic retinopathy` → `diabetic_retinopathy`. */
export function classSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
}

/**
 * The one-vs-normal predictor as ONE stock tfjs network, so that it saves, loads and predicts like any other model
 * (CLI, API, browser): the input feeds one binary member network per pathology (its layers prefixed `<slug>__`);
 * each member's sigmoid is that pathology's probability, and `normal` is 1 − max over the members ("no member fires"),
 * computed with a Maximum layer and a frozen Dense(−1, +1). Outputs are in `classes` order (pathologies, then normal).
 */
export function buildOneVsNormalNetwork(
  architecture: string,
  inputShape: [number, number, number],
  pathologies: string[],
  normalClass = 'normal',
): { network: tfl.LayersModel; classes: string[] } {
  if (pathologies.length < 1) throw new InputError('one-vs-normal needs at least one pathology');
  const input = tfl.input({ shape: inputShape, name: 'input' });
  const memberProbs = pathologies.map((p) => {
    const prefix = `${classSlug(p)}__`;
    const logits = buildLogits(architecture, input, 1, { prefix });
    return tfl.layers.activation({ activation: 'sigmoid', name: `${prefix}probs` }).apply(logits) as SymbolicTensor;
  });
  const anyMax =
    memberProbs.length === 1 ? memberProbs[0] : (tfl.layers.maximum({ name: 'any_pathology' }).apply(memberProbs) as SymbolicTensor);
  const normal = tfl.layers
    .dense({
      units: 1,
      trainable: false,
      kernelInitializer: tfl.initializers.constant({ value: -1 }),
      biasInitializer: tfl.initializers.constant({ value: 1 }),
      name: 'normal_probs',
    })
    .apply(anyMax) as SymbolicTensor;
  const out = tfl.layers.concatenate({ axis: -1, name: 'probs' }).apply([...memberProbs, normal]) as SymbolicTensor;
  return { network: tfl.model({ inputs: input, outputs: out, name: `one_vs_normal_${architecture}` }), classes: [...pathologies, normalClass] };
}

/** Copies a trained member (a binary network built by buildNetwork) into its prefixed layers of the combined one. */
export function loadMemberWeights(combined: tfl.LayersModel, member: tfl.LayersModel, pathology: string): void {
  const prefix = `${classSlug(pathology)}__`;
  for (const layer of member.layers) {
    const weights = layer.getWeights();
    if (weights.length === 0) continue;
    let target: tfl.layers.Layer;
    try {
      target = combined.getLayer(prefix + layer.name);
    } catch {
      throw new InputError(`member ${pathology}: layer ${layer.name} has no counterpart ${prefix + layer.name}`);
    }
    target.setWeights(weights);
  }
}
