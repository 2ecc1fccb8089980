import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { copyWeights } from './checkpoint.js';

/**
 * The starting weights of a run that fine-tunes an existing model (`--init-from`): all of them, or all but the output
 * layer when the classes differ.
 */
export function initFromModel(init: { network: tfl.LayersModel; metadata: ModelMetadata }, classes: string[]) {
  return async (network: tfl.LayersModel): Promise<void> => {
    if (init.metadata.classes.join('|') === classes.join('|')) {
      copyWeights(init.network, network, `--init-from ${init.metadata.architecture}`);
      return;
    }
    for (const layer of network.layers) {
      if (layer.name === 'logits' || layer.getWeights().length === 0) continue;
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
