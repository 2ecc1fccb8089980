// Heatmap speed per method on the bundled model (models/default; a randomly initialised reference AlexNet until it
// exists), and Grad-CAM against PyTorch 1.13 + a hand-written Grad-CAM on the same network and weights.
// Run: npm run bench:explain [-- --model models/default --images 6 --repeats 3 --methods gradcam,scorecam]
// Peer: /usr/bin/python3 benchmarks/explain_peer.py (called from here). Last line: `ratio gradcam native/pytorch: X`
// (PyTorch seconds / fundus seconds per image, so > 1 means fundus is faster).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/index.js';
import { buildNetwork } from '../src/models/architectures.js';
import { loadModel, saveModel, type FundusModel } from '../src/models/io.js';
import { CLASSES } from '../src/data/labels.js';
import { DEFAULT_PREPROCESS, preprocessImage, type PreprocessedImage } from '../src/data/preprocess.js';
import { CAM_METHODS, CamExplainer, isCamMethod, type CamMethod, type CamTarget } from '../src/explain/cam.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const VIETAI = join('..', 'shared', 'data', 'vietai');
const nImages = Number(arg('images', '4'));
const repeats = Number(arg('repeats', '2'));
const methods = arg('methods', CAM_METHODS.join(',')).split(',').filter(isCamMethod) as CamMethod[];

const engine = await initEngine();
const tmp = await mkdtemp(join(tmpdir(), 'fundus-bench-explain-'));
try {
  let model: FundusModel;
  const modelArg = arg('model', existsSync('models/default/fundus.json') ? 'models/default' : '');
  if (modelArg) model = await loadModel(modelArg);
  else {
    // The reference AlexNet with random weights, saved so that the PyTorch peer reads the very same weights.
    const network = buildNetwork('alexnet', [227, 227, 1], CLASSES.length, { seed: 1 });
    const dir = join(tmp, 'alexnet');
    await saveModel(dir, network, {
      format: 'fundus-model',
      formatVersion: 1,
      architecture: 'alexnet',
      task: 'multilabel',
      classes: [...CLASSES],
      activation: 'sigmoid',
      preprocess: DEFAULT_PREPROCESS,
      inputShape: [227, 227, 1],
      thresholds: CLASSES.map(() => 0.5),
      thresholdPolicy: 'default 0.5',
      createdAt: new Date().toISOString(),
      fundusVersion: '0.1.0',
    });
    model = await loadModel(dir);
  }
  const meta = model.metadata;
  const focus = ['diabetic retinopathy', 'glaucoma', 'normal'].map((c) => meta.classes.indexOf(c)).filter((k) => k >= 0);
  const classes = focus.length > 0 ? focus : [0];

  // Images: the test part of the canonical split when it exists, else the first rows of train.csv.
  let files: string[];
  if (existsSync('splits/vietai.json')) {
    files = (JSON.parse(await readFile('splits/vietai.json', 'utf8')) as { parts: { test: string[] } }).parts.test;
  } else {
    files = (await readFile(join(VIETAI, 'train.csv'), 'utf8')).split('\n').slice(1).filter(Boolean).map((l) => l.split(',')[0]);
  }
  const images: PreprocessedImage[] = [];
  for (const f of files.slice(0, nImages)) images.push(await preprocessImage(join(VIETAI, 'train', f), meta.preprocess));

  const explainer = new CamExplainer(model.network, meta.activation);
  const [h, w, c] = meta.inputShape;
  console.log(
    `explain benchmark: model ${modelArg || 'alexnet (random weights)'} (${meta.architecture}, ${h}x${w}x${c}), layer ${explainer.layerName}, ` +
      `backend ${engine.backend} (${engine.threads} threads), ${images.length} images x ${classes.length} classes (${classes.map((k) => meta.classes[k]).join(', ')})`,
  );
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const timeMethod = (method: CamMethod, imgs: PreprocessedImage[], reps: number) => {
    const targets: CamTarget[] = classes.map((k) => ({ image: 0, classIndex: k }));
    explainer.explain([imgs[0]], targets, method); // warm-up
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      for (const im of imgs) {
        const t0 = performance.now();
        explainer.explain([im], targets, method);
        times.push((performance.now() - t0) / 1000);
      }
    }
    return median(times);
  };
  const perImage: Partial<Record<CamMethod, number>> = {};
  for (const method of methods) {
    // Score-CAM needs one forward pass per channel of the target layer: one image, one repeat is plenty.
    const s = method === 'scorecam' ? timeMethod(method, images.slice(0, 1), 1) : timeMethod(method, images, repeats);
    perImage[method] = s;
    console.log(
      `${method.padEnd(20)} ${(1000 * s).toFixed(1).padStart(9)} ms per image (${classes.length} classes), ` +
        `${((1000 * s) / classes.length).toFixed(1).padStart(8)} ms per image·class, ${(1 / s).toFixed(2).padStart(7)} images/s`,
    );
  }

  // PyTorch peer on the same preprocessed inputs, classes and weights.
  const buf = new Float32Array(images.length * h * w * c);
  images.forEach((im, i) => buf.set(im.data, i * h * w * c));
  await writeFile(join(tmp, 'x.f32'), new Uint8Array(buf.buffer));
  const peer = spawnSync(
    '/usr/bin/python3',
    [
      'benchmarks/explain_peer.py',
      model.dir,
      join(tmp, 'x.f32'),
      String(images.length),
      String(h),
      String(w),
      String(c),
      classes.join(','),
      explainer.layerName,
      String(repeats),
      String(engine.threads),
      join(tmp, 'peer.json'),
    ],
    { stdio: 'inherit' },
  );
  if (peer.status !== 0) throw new Error('the PyTorch peer failed');
  const ref = JSON.parse(await readFile(join(tmp, 'peer.json'), 'utf8')) as {
    secondsPerImage: number;
    threads: number;
    torch: string;
    heatmaps0: number[][];
    logits0: number[];
  };
  const ours = explainer.explain([images[0]], classes.map((k) => ({ image: 0, classIndex: k })), 'gradcam');
  let maxDiff = 0;
  ours.forEach((r, j) => r.heatmap.data.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - ref.heatmaps0[j][i])))));
  const fundusSeconds = perImage.gradcam ?? timeMethod('gradcam', images, repeats);
  console.log(
    `pytorch ${ref.torch} (${ref.threads} threads) hand-written gradcam ${(1000 * ref.secondsPerImage).toFixed(1)} ms per image ` +
      `(${classes.length} classes); fundus ${(1000 * fundusSeconds).toFixed(1)} ms; heatmaps agree to ${maxDiff.toExponential(2)}, ` +
      `logits ${ours.map((r) => r.score.toFixed(4)).join('/')} vs ${ref.logits0.map((v) => v.toFixed(4)).join('/')}`,
  );
  console.log(`ratio gradcam native/pytorch: ${(ref.secondsPerImage / fundusSeconds).toFixed(2)}`);
} finally {
  await rm(tmp, { recursive: true, force: true });
}
