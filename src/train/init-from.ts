import type * as tfl from '@tensorflow/tfjs-layers';
import { LESION_HEAD_LAYERS } from '../models/lesion-head.js';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { copyWeights } from './checkpoint.js';

/**
 * The starting weights of a run that fine-tunes an existing model (`--init-from`): all of them, or all but the output
 * layer when the classes differ. A lesion map head that the run adds and the model lacks keeps its starting values.
 */
export function initFromModel(init: { network: tfl.LayersModel; metadata: ModelMetadata }, classes: string[]) {
  return async (network: tfl.LayersModel): Promise<void> => {
    const sameClasses = init.metadata.classes.join('|') === classes.join('|');
    if (sameClasses && init.network.weights.length === network.weights.length) {
      copyWeights(init.network, network, `--init-from ${init.metadata.architecture}`);
      return;
    }
    const has = new Set(init.network.layers.map((l) => l.name));
    for (const layer of network.layers) {
      if ((layer.name === 'logits' && !sameClasses) || layer.getWeights().length === 0) continue;
      if (LESION_HEAD_LAYERS.has(layer.name) && (!has.has(layer.name) || !sameClasses)) continue;
      let src: tfl.layers.Layer;
      try {
        src = init.network.getLayer(layer.name);
      } catch {
        throw new InputError(`--init-from: the model has no layer "${layer.name}"`);
      }
      layer.setWeights(src.getWeights());
    }
  };
}
