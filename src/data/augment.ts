import { InputError } from '../util/errors.js';
import { applyCamera, cameraActive, NO_CAMERA, type CameraParams } from './camera-augment.js';
import { DEFAULT_PREPROCESS } from './preprocess.js';
import type { PreprocessSettings } from './preprocess.js';

/**
 * Random training-time transformations of a preprocessed image. Ranges are symmetric around "no change"; set a
 * field to 0 to switch that transformation off. They work on preprocessed (cached) arrays, so augmentation never
 * needs the JPEG again.
 */
export interface AugmentSettings {
  /** Probability of a left-right flip (a right eye then looks like a left eye). */
  hflip: number;
  /** Probability of an up-down flip. */
  vflip: number;
  /** Largest rotation in degrees, either way. */
  rotation: number;
  /** Zoom factor drawn from [1 - scale, 1 + scale]. */
  scale: number;
  /** Largest shift as a fraction of the side, per axis. */
  translate: number;
  /** Brightness offset drawn from [-brightness, brightness], in [0, 1] pixel units. */
  brightness: number;
  /** Contrast factor drawn from [1 - contrast, 1 + contrast], around the disc's mean. */
  contrast: number;
  /** Gamma drawn log-uniformly from [1 / (1 + gamma), 1 + gamma]. */
  gamma: number;
  // Camera augmentation (camera-augment.ts): what differs between fundus cameras, so that a network cannot learn the
  // camera instead of the retina. Absent or 0: off, and nothing is drawn for them (seeded streams stay as they were).
  /**
   * Blur or sharpen: σ drawn from [-blur, blur] input pixels; a positive σ blurs with a Gaussian, a negative one
   * sharpens by unsharp masking with σ = |σ| (amount 1).
   */
  blur?: number;
  /** Colour temperature t drawn from [-temperature, temperature]: red × (1 + t), blue × (1 − t). RGB inputs only. */
  temperature?: number;
  /** Gaussian pixel noise with a std drawn from [0, noise], in [0, 1] pixel units. */
  noise?: number;
  /** Low resolution: shrink by a factor drawn from [1 - downscale, 1] (area average) and enlarge back (bilinear). */
  downscale?: number;
  /** JPEG re-compression at a quality drawn from [jpeg, 95] (a whole number; 0: off). */
  jpeg?: number;
  /**
   * How the input was normalised (PreprocessSettings.normalize), so that photometric jitter works in pixel space and
   * areas uncovered by rotation or zoom are filled with black, like the border. Defaults to DEFAULT_PREPROCESS's.
   */
  normalize?: PreprocessSettings['normalize'];
}

export const DEFAULT_AUGMENT: AugmentSettings = {
  hflip: 0.5,
  vflip: 0.2,
  rotation: 15,
  scale: 0.1,
  translate: 0.03,
  brightness: 0.08,
  contrast: 0.15,
  gamma: 0.2,
  blur: 0,
  temperature: 0,
  noise: 0,
  downscale: 0,
  jpeg: 0,
};

/**
 * What `--camera-augment` merges into the augmentation: mild versions of the differences between fundus cameras at
 * the network's input resolution (224 px). Blur/sharpening up to σ = 0.8 px; white balance up to ±10 % on red and
 * blue (a clearly warmer or cooler cast); noise up to 2 % (5 levels of 255); resolution down to half the side; JPEG
 * down to quality 40. The JPEG blocks are 8 input pixels, coarser than a camera's blocks after the photo's reduction
 * to 224 px, so the lowest quality stays moderate.
 */
export const CAMERA_AUGMENT: Partial<AugmentSettings> = {
  blur: 0.8,
  temperature: 0.1,
  noise: 0.02,
  downscale: 0.5,
  jpeg: 40,
};

/** Checks the camera fields (InputError): ranges beyond these destroy the image rather than imitate a camera. */
export function validateAugmentSettings(s: Partial<AugmentSettings>, where = 'augmentation settings'): Partial<AugmentSettings> {
  const check = (name: keyof AugmentSettings, max: number, what: string) => {
    const v = s[name];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
      throw new InputError(`${where}: ${name} must be a number in [0, ${max}] (${what}; got ${JSON.stringify(v)})`);
    }
  };
  check('blur', 5, 'largest blur or sharpening σ in pixels');
  check('temperature', 0.5, 'largest red/blue gain change');
  check('noise', 0.5, 'largest noise std in [0, 1] pixel units');
  check('downscale', 0.9, 'the smallest resampling factor is 1 - downscale');
  check('jpeg', 95, 'lowest JPEG quality, 0 for none');
  if (s.jpeg !== undefined && s.jpeg !== 0 && (!Number.isInteger(s.jpeg) || s.jpeg < 1)) {
    throw new InputError(`${where}: jpeg must be 0 (off) or a whole quality in 1..95 (got ${s.jpeg})`);
  }
  return s;
}

/** Pixels darker than this (in [0, 1]) are border, left black by photometric jitter. */
const BORDER = 0.03;

const GAMMA_STEPS = 4096;

/** x^gamma at GAMMA_STEPS + 1 evenly spaced points of [0, 1]. */
function gammaCurve(gamma: number): Float64Array {
  const curve = new Float64Array(GAMMA_STEPS + 1);
  for (let k = 0; k <= GAMMA_STEPS; k++) curve[k] = Math.pow(k / GAMMA_STEPS, gamma);
  return curve;
}

/**
 * The transformation drawn for one call, exposed for tests and previews. The camera fields (CameraParams) are
 * optional: absent means none.
 */
export interface AugmentParams extends Partial<CameraParams> {
  hflip: boolean;
  vflip: boolean;
  angle: number;
  zoom: number;
  dx: number;
  dy: number;
  brightness: number;
  contrast: number;
  gamma: number;
}

/** Draws the parameters in a fixed order, so that a seeded generator gives the same augmentation everywhere. */
export function drawAugmentParams(rng: () => number, s: AugmentSettings): AugmentParams {
  const sym = (r: number): number => (2 * rng() - 1) * r;
  const hflip = rng() < s.hflip;
  const vflip = rng() < s.vflip;
  const angle = (sym(s.rotation) * Math.PI) / 180;
  const zoom = 1 + sym(s.scale);
  const dx = sym(s.translate);
  const dy = sym(s.translate);
  const brightness = sym(s.brightness);
  const contrast = 1 + sym(s.contrast);
  const gamma = Math.exp(sym(Math.log(1 + s.gamma)));
  // Camera parameters after all the others, and only for the fields that are on: with them off the generator is
  // left exactly where it was, so seeded runs from before camera augmentation draw the same numbers.
  const blur = s.blur ? sym(s.blur) : 0;
  const temperature = s.temperature ? sym(s.temperature) : 0;
  const noise = s.noise ? s.noise * rng() : 0;
  const noiseSeed = s.noise ? Math.floor(rng() * 4294967296) : 0;
  const resolution = s.downscale ? 1 - s.downscale * rng() : 1;
  const jpegQuality = s.jpeg ? Math.round(s.jpeg + (95 - s.jpeg) * rng()) : 0;
  return { hflip, vflip, angle, zoom, dx, dy, brightness, contrast, gamma, blur, temperature, noise, noiseSeed, resolution, jpegQuality };
}

function stats(norm: PreprocessSettings['normalize'], c: number): [number, number] {
  return [norm.mean.length === 1 ? norm.mean[0] : norm.mean[c], norm.std.length === 1 ? norm.std[0] : norm.std[c]];
}

/** Applies given parameters (see augment). Bilinear resampling; uncovered areas become black. */
export function applyAugment(
  image: Float32Array,
  size: number,
  channels: number,
  p: AugmentParams,
  normalize: PreprocessSettings['normalize'] = DEFAULT_PREPROCESS.normalize,
): Float32Array {
  if (image.length !== size * size * channels) {
    throw new Error(`augment: expected ${size}x${size}x${channels} = ${size * size * channels} values, got ${image.length}`);
  }
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < channels; c++) [mean[c], std[c]] = stats(normalize, c);
  const out = new Float32Array(image.length);

  // Geometry: for every output pixel, find its source by the inverse of flip, rotation, zoom and shift about the centre.
  const centre = (size - 1) / 2;
  const cos = Math.cos(p.angle) / p.zoom;
  const sin = Math.sin(p.angle) / p.zoom;
  const fx = p.hflip ? -1 : 1;
  const fy = p.vflip ? -1 : 1;
  const shiftX = p.dx * size;
  const shiftY = p.dy * size;
  // Black in normalised units, per channel: what uncovered areas (outside the source) read as.
  const black: number[] = [];
  for (let c = 0; c < channels; c++) black[c] = -mean[c] / std[c];
  // The hot loop of training at 224 px (150k pixels an image): no closure or allocation per pixel, and the bounds
  // tested once per neighbour; the arithmetic is the same expression in the same order as ever.
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const ox = u - centre - shiftX;
      const oy = v - centre - shiftY;
      // inverse rotation and zoom, then the flip (its own inverse)
      const sx = fx * (cos * ox + sin * oy) + centre;
      const sy = fy * (-sin * ox + cos * oy) + centre;
      const o = (v * size + u) * channels;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const ax = sx - x0;
      const ay = sy - y0;
      const in00 = x0 >= 0 && y0 >= 0 && x0 < size && y0 < size;
      const in10 = x0 + 1 >= 0 && y0 >= 0 && x0 + 1 < size && y0 < size;
      const in01 = x0 >= 0 && y0 + 1 >= 0 && x0 < size && y0 + 1 < size;
      const in11 = x0 + 1 >= 0 && y0 + 1 >= 0 && x0 + 1 < size && y0 + 1 < size;
      const i00 = (y0 * size + x0) * channels;
      const i10 = i00 + channels;
      const i01 = i00 + size * channels;
      const i11 = i01 + channels;
      for (let c = 0; c < channels; c++) {
        const b = black[c];
        const p00 = in00 ? image[i00 + c] : b;
        const p10 = in10 ? image[i10 + c] : b;
        const p01 = in01 ? image[i01 + c] : b;
        const p11 = in11 ? image[i11 + c] : b;
        out[o + c] = (1 - ay) * ((1 - ax) * p00 + ax * p10) + ay * ((1 - ax) * p01 + ax * p11);
      }
    }
  }

  // Photometry in [0, 1] pixel space, on the disc only so that the border stays black. The gamma curve comes from a
  // table with linear interpolation (error below 1e-7, far under a pixel's 1/255): Math.pow per pixel and channel was
  // three quarters of the augmentation's time at 224 px.
  if (p.brightness !== 0 || p.contrast !== 1 || p.gamma !== 1) {
    const curve = gammaCurve(p.gamma);
    for (let c = 0; c < channels; c++) {
      let sum = 0;
      let n = 0;
      for (let i = c; i < out.length; i += channels) {
        const px = out[i] * std[c] + mean[c];
        if (px > BORDER) {
          sum += px;
          n++;
        }
      }
      const discMean = Math.pow(n > 0 ? sum / n : 0.5, p.gamma); // the disc's mean after the gamma, roughly
      for (let i = c; i < out.length; i += channels) {
        let px = out[i] * std[c] + mean[c];
        if (px <= BORDER) continue;
        const t = Math.min(1, px) * GAMMA_STEPS;
        const j = Math.min(GAMMA_STEPS - 1, Math.floor(t));
        px = curve[j] + (curve[j + 1] - curve[j]) * (t - j);
        px = (px - discMean) * p.contrast + discMean + p.brightness;
        px = px < 0 ? 0 : px > 1 ? 1 : px;
        out[i] = (px - mean[c]) / std[c];
      }
    }
  }

  // Camera augmentation, last (in pixel space, see camera-augment.ts); skipped entirely when off.
  const camera: CameraParams = { ...NO_CAMERA, ...p };
  if (cameraActive(camera)) {
    const px = new Float32Array(out.length);
    for (let c = 0; c < channels; c++) {
      const m = mean[c];
      const sd = std[c];
      for (let i = c; i < out.length; i += channels) px[i] = out[i] * sd + m;
    }
    const done = applyCamera(px, size, channels, camera, BORDER);
    for (let c = 0; c < channels; c++) {
      const m = mean[c];
      const sd = std[c];
      // values the camera step left alone keep their exact values (no round trip through pixel space)
      for (let i = c; i < out.length; i += channels) if (done[i] !== px[i]) out[i] = (done[i] - m) / sd;
    }
  }
  return out;
}

/**
 * A random augmentation of a preprocessed HWC image (normalised as `settings.normalize` says): flips, small rotation,
 * zoom and shift, brightness/contrast/gamma jitter, and the camera augmentation where its fields are on.
 * Deterministic for a given `rng` state. Returns a new array.
 */
export function augment(
  image: Float32Array,
  size: number,
  channels: number,
  rng: () => number,
  settings: Partial<AugmentSettings> = {},
): Float32Array {
  return augmentDrawn(image, size, channels, rng, settings).image;
}

/** `augment`, also returning the parameters it drew (to move a mask of the same image with it: `warpMask`). */
export function augmentDrawn(
  image: Float32Array,
  size: number,
  channels: number,
  rng: () => number,
  settings: Partial<AugmentSettings> = {},
): { image: Float32Array; params: AugmentParams } {
  const s: AugmentSettings = { ...DEFAULT_AUGMENT, ...settings };
  validateAugmentSettings(s);
  const params = drawAugmentParams(rng, s);
  return { image: applyAugment(image, size, channels, params, s.normalize ?? DEFAULT_PREPROCESS.normalize), params };
}

/**
 * A one-channel `size`×`size` mask of an image (0 outside, 1 inside) moved as `augment` moved the image with `p`:
 * the flips, rotation, zoom and shift only, bilinear, 0 where the image was uncovered.
 */
export function warpMask(mask: Float32Array, size: number, p: AugmentParams): Float32Array {
  const geometric: AugmentParams = { ...p, brightness: 0, contrast: 1, gamma: 1, ...NO_CAMERA };
  return applyAugment(mask, size, 1, geometric, { mean: [0], std: [1] });
}
