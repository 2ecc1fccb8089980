import type { Command } from 'commander';
import { initEngine } from '../engine/index.js';
import { loadModel } from '../models/io.js';
import { embedFiles, saveEmbeddings } from './embed.js';
import { expandImageArgs } from './files.js';

export function register(program: Command): void {
  program
    .command('embed')
    .description(
      'Save image embeddings: the activations of one layer of a trained model (default: the penultimate layer, the ' +
        'input of the classification head). Writes <out>.f32 (little-endian float32, rows x dim, row-major) and ' +
        '<out>.json (rows, dim, layer, image names and paths in row order).',
    )
    .argument('<model-dir>', 'a fundus model directory (model.json, weights.bin, fundus.json)')
    .argument('<images...>', 'image files or folders of images')
    .requiredOption('-o, --out <file>', 'output path; .f32 is added when missing, the sidecar is <out>.json')
    .option('--layer <name>', 'layer whose output is the embedding (default: the penultimate layer)')
    .option('--batch-size <n>', 'images per forward pass', (v) => Number.parseInt(v, 10), 16)
    .option('--no-cache', 'do not read or write the preprocessing cache')
    .action(async (modelDir: string, images: string[], opts: { out: string; layer?: string; batchSize: number; cache: boolean }) => {
      await initEngine();
      const model = await loadModel(modelDir);
      const paths = await expandImageArgs(images);
      const emb = await embedFiles(model, paths, { layer: opts.layer, batchSize: opts.batchSize, cache: opts.cache, progressLabel: 'embed' });
      const written = await saveEmbeddings(opts.out, emb, modelDir);
      console.log(`${emb.matrix.rows} embeddings of dimension ${emb.matrix.cols} from layer "${emb.layer}" → ${written.data}, ${written.sidecar}`);
    });
}
