import type { DicomPhotoInfo } from '../data/dicom.js';
/**
 * The JSON shapes of the HTTP API, shared by the server, the predict CLI and the web viewer (which imports these
 * types only, so that the browser bundle stays free of Node code).
 */

import type { PhotoRecord, PredictionRecord, UngradableRecord } from '../models/records.js';

export type { PhotoRecord, PredictionRecord, UngradableRecord };

interface ResponseContext {
  model: { version: string; architecture: string; task: string };
  classes: string[];
  thresholds: number[];
  /** Size of the decoded photograph. */
  image: { width: number; height: number; format: string; dicom?: DicomPhotoInfo };
  timeMs: number;
}

/**
 * The answer to POST /v1/predict: the prediction (`gradable: true`, or absent when the server runs with
 * `--no-gradability-check`), or, for a photograph the gradability gate refuses, `gradable: false` with the reasons
 * and no probabilities or decisions.
 */
export type PredictResponse = GradedResponse | UngradableResponse;
export type GradedResponse = PredictionRecord & ResponseContext;
export type UngradableResponse = UngradableRecord & ResponseContext;

/** The crop of the photograph the network saw, in original pixel coordinates (may extend past the edges). */
export interface CropBox {
  x: number;
  y: number;
  side: number;
  width: number;
  height: number;
}

export interface ExplainResponse {
  class: string;
  method: string;
  /** The network layer the map was made at (several fused: joined by '+'), so that a reader knows its grain. */
  layer: string;
  probability: number;
  model: { version: string };
  /** Heatmap values in [0, 1], row-major, covering `crop`. */
  heatmap: { width: number; height: number; data: number[] };
  crop: CropBox;
  image: { width: number; height: number; format: string; dicom?: DicomPhotoInfo };
}

export interface ModelCard {
  version: string;
  architecture: string;
  task: string;
  classes: string[];
  activation: 'sigmoid' | 'softmax';
  thresholds: number[];
  thresholdPolicy: string;
  inputShape: [number, number, number];
  preprocess: unknown;
  explainMethods: string[];
  /**
   * The method /v1/explain uses when none is asked for (the viewer starts with it): the model's own when its
   * fundus.json records one (`explanation`), else fundus's global default.
   */
  defaultExplainMethod: string;
  /**
   * The layer maps are made at, when the model records one (absent: chosen automatically; each map's `layer` says
   * which), except for the classes of `defaultExplainLayerByClass`.
   */
  defaultExplainLayer?: string;
  /** Classes whose maps are made at a layer of their own (e.g. `lesion_map` for the class a lesion map head feeds). */
  defaultExplainLayerByClass?: Record<string, string>;
  /** Which measurement chose the model's default method and layer, when the model records them. */
  defaultExplainChosenBy?: string;
  /** The pretrained backbone the network was built on (name, weights, source, licence, sha256). */
  backbone?: unknown;
  /** Test-time augmentation the predictions include (absent: one forward pass). */
  inference?: { tta: string };
  trainingData?: unknown;
  metrics?: Record<string, unknown>;
  /** The items of the model card's "Limitations" section (MODEL_CARD.md), as plain text. */
  limitations?: string[];
  createdAt: string;
  fundusVersion: string;
}

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
}
