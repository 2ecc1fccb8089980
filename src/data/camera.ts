import { maskedGaussianBlur } from './gauss.js';

/**
 * Camera-invariant preprocessing (issue #16). Most `normal` photographs come from other cameras than the diseased
 * ones, so a network can separate the classes by the camera: the shape of the field stop (its rim, notches, how much
 * of the disc is clipped), the overall colour and illumination. These steps take such cues away from the input; they
 * run on the square RGB crop, before CLAHE and the channel choice, and are recorded with the model like every other
 * preprocessing setting.
 */

/**
 * Radius of the circle mask as a fraction of half the input side. The disc crop makes the fundus disc touch the
 * square's sides, so a circle of the full radius would keep the field stop's edge: a soft ramp several pixels wide
 * where resampling mixes in the black border, and on many cameras a bright halo or reflection ring just inside it,
 * or a notch; their look differs between cameras. 0.95 cuts the outer 5 % of the radius (5.6 px at 224, 12.8 px at
 * 512), which removes them and absorbs the disc detector's few-pixel error in the centre and size, at the cost of
 * the outermost tenth of the disc's area (1 − 0.95²), the far periphery where little pathology is graded.
 */
export const CIRCLE_MASK_RADIUS = 0.95;

const circles = new Map<number, Uint8Array>();

/**
 * 1 inside the standard circle of a `size`×`size` input, 0 outside: centred in the square, radius
 * CIRCLE_MASK_RADIUS × size/2, a pixel inside when its centre is. Cached per size (read only).
 */
export function circleMask(size: number): Uint8Array {
  let m = circles.get(size);
  if (m) return m;
  m = new Uint8Array(size * size);
  const c = size / 2;
  const r2 = (CIRCLE_MASK_RADIUS * c) ** 2;
  for (let v = 0; v < size; v++) {
    const dy = v + 0.5 - c;
    for (let u = 0; u < size; u++) {
      const dx = u + 0.5 - c;
      if (dx * dx + dy * dy <= r2) m[v * size + u] = 1;
    }
  }
  circles.set(size, m);
  return m;
}

/** Sets the pixels of an interleaved image outside `inside` to 0, in place. */
export function applyMask(pixels: Uint8Array, channels: number, inside: Uint8Array): void {
  for (let i = 0; i < inside.length; i++) {
    if (inside[i]) continue;
    for (let c = 0; c < channels; c++) pixels[i * channels + c] = 0;
  }
}

/**
 * Graham's local-mean normalisation (Kaggle diabetic retinopathy, 2015): out = 4·(img − GaussianBlur(img, σ)) + 128,
 * clamped to bytes, per channel. Subtracting the local mean removes the camera's colour cast, exposure and
 * vignetting, and leaves the local contrast lesions and vessels make, around a neutral grey. The blur is a
 * normalised convolution over `inside` (see gauss.ts), so the black border does not pull the rim's local mean down
 * (which would light the rim up as a bright ring); pixels outside `inside` come out 0. σ in pixels. Returns a new
 * array.
 */
export function localMeanNormalize(rgb: Uint8Array, size: number, channels: number, inside: Uint8Array, sigmaPx: number): Uint8Array {
  const mean = maskedGaussianBlur(rgb, size, size, channels, inside, sigmaPx);
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < inside.length; i++) {
    if (!inside[i]) continue;
    for (let c = 0; c < channels; c++) {
      const j = i * channels + c;
      const v = 4 * (rgb[j] - mean[j]) + 128;
      out[j] = Math.floor(Math.min(255, Math.max(0, v)) + 0.5); // not Math.round, which branches (slowly) on the fraction
    }
  }
  return out;
}
