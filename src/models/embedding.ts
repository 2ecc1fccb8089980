import * as tfl from '@tensorflow/tfjs-layers';
import { InputError } from '../util/errors.js';

/** The layer feeding the classification head: the inbound layer of `logits` (or of the last Dense layer). */
export function penultimateLayerName(network: tfl.LayersModel): string {
  const head =
    network.layers.find((l) => l.name === 'logits' || l.name.endsWith('/logits')) ??
    [...network.layers].reverse().find((l) => l.getClassName() === 'Dense');
  if (!head) throw new InputError(`the network has no "logits" or Dense layer: name the embedding layer with --layer`);
  const inbound = head.inboundNodes[0]?.inboundLayers[0];
  if (!inbound) throw new InputError(`layer "${head.name}" has no input layer: name the embedding layer with --layer`);
  return inbound.name;
}

/** A model from the network's input to `layer` (flattened per image). */
export function embeddingModel(network: tfl.LayersModel, layer?: string): { model: tfl.LayersModel; layer: string } {
  const name = layer ?? penultimateLayerName(network);
  let target: tfl.layers.Layer;
  try {
    target = network.getLayer(name);
  } catch {
    const names = network.layers.map((l) => l.name);
    throw new InputError(`the network has no layer "${name}" (layers: ${names.join(', ')})`);
  }
  const output = target.output;
  if (Array.isArray(output)) throw new InputError(`layer "${name}" has several outputs; pick a layer with one`);
  return { model: tfl.model({ inputs: network.inputs, outputs: output }), layer: name };
}
