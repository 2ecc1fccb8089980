/** The seven classes of the VietAI contest, in the column order of its `train.csv`. */
export const CLASSES = [
  'opacity',
  'diabetic retinopathy',
  'glaucoma',
  'macular edema',
  'macular degeneration',
  'retinal vascular occlusion',
  'normal',
] as const;

export type ClassName = (typeof CLASSES)[number];

/** The specialists' focus task: diabetic retinopathy and glaucoma against normal. */
export const FOCUS_CLASSES: readonly ClassName[] = ['diabetic retinopathy', 'glaucoma', 'normal'];

/** The pathologies, i.e. every class but `normal`. */
export const PATHOLOGIES: readonly ClassName[] = CLASSES.filter((c) => c !== 'normal');

export function isClassName(s: string): s is ClassName {
  return (CLASSES as readonly string[]).includes(s);
}

/** The labels of one image: a 0/1 entry per class of `classes` (multi-hot). */
export interface LabelSet {
  classes: readonly string[];
  values: Uint8Array;
}

/** One labelled (or unlabelled) image of a dataset. */
export interface LabelledImage {
  /** File name as written in the CSV, e.g. `c24a1b14d253.jpg`. */
  filename: string;
  /** Absolute path on disk. */
  path: string;
  /** Multi-hot labels in the dataset's class order; absent for unlabelled images. */
  labels?: Uint8Array;
  /**
   * 1 where the class was graded, 0 where the source left it empty ("not graded": unknown, never "absent"; the
   * label there is 0 and means nothing). Absent: every class was graded.
   */
  graded?: Uint8Array;
  /** The source it comes from, when the dataset joins several (see datasets.ts). */
  source?: string;
  /** The unit that must stay inside one split part (a patient), when the source names one. */
  group?: string;
}

/** Whether class `k` of `image` was graded (images of fully graded CSVs always are). */
export function isGraded(image: LabelledImage, k: number): boolean {
  return image.graded === undefined || image.graded[k] === 1;
}

/** A dataset: its class names and images, as read from a CSV and an image folder. */
export interface Dataset {
  classes: string[];
  images: LabelledImage[];
  csvPath?: string;
  imagesDir: string;
}
