/**
 * Preprocessing settings. They are explicit and serialisable because every model stores the settings it was
 * trained with, and prediction must apply exactly the same ones.
 */
export interface PreprocessSettings {
  /** Crop to the fundus disc by thresholding the dark border, centre it and pad it to a square. */
  crop: boolean;
  /** Side of the square network input in pixels, e.g. 227 or 224. */
  size: number;
  /** `green` keeps only the green channel (as the reference AlexNet does); `rgb` keeps all three. */
  channels: 'green' | 'rgb';
  /** Contrast-limited adaptive histogram equalisation. */
  clahe: boolean;
  /** Per-channel mean and std applied after scaling pixels to [0, 1]. */
  normalize: { mean: number[]; std: number[] };
}

export const DEFAULT_PREPROCESS: PreprocessSettings = {
  crop: true,
  size: 227,
  channels: 'green',
  clahe: false,
  normalize: { mean: [0.5], std: [0.25] },
};
