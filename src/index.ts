/**
 * fundus as a library: detect pathologies in retinal fundus photographs, explain the decisions with heatmaps,
 * evaluate models honestly, self-learn from unlabelled photographs and train new models, from TypeScript or
 * JavaScript (Node.js 20 or later, ESM).
 *
 * ```ts
 * import { initEngine, Predictor, DEFAULT_MODEL_DIR } from 'fundus';
 *
 * await initEngine();
 * const predictor = await Predictor.load(DEFAULT_MODEL_DIR);
 * for (const r of await predictor.classify(['eye.jpg'])) console.log(r.file, r.positive, r.probabilities);
 * await predictor.close();
 * ```
 *
 * The command line (`fundus …`) is a thin layer over these functions; the HTTP API lives behind `fundus serve`.
 * @packageDocumentation
 */
// The engine: set up once per process before any model runs.
export { initEngine, isNativeAvailable, type EngineInfo, type EngineOptions, type SelfCheck, type SelfCheckProblem } from './engine/index.js';

// Models and prediction.
export { DEFAULT_MODEL_DIR, disposeModel, loadModel, saveModel, readMetadata, type FundusModel } from './models/io.js';
export type { ModelMetadata, Task, FineTuneRecipe, TestTimeAugmentation, ExplanationSetting, TrainingRecipe, TrainingSource } from './models/metadata.js';
export {
  Predictor,
  predictFiles,
  initBatchPrediction,
  type ImageInput,
  type ImageOutcome,
  type PredictedBatch,
  type PredictorOptions,
  type RunOptions,
  type EmbeddingRows,
} from './models/predictor.js';
export { toRecord, type PredictionRecord } from './models/records.js';
export { penultimateLayerName } from './models/embedding.js';

// Photographs, labels and splits.
export { collectImages, isImageName, IMAGE_EXTENSIONS, type CollectOptions, type SkippedEntry } from './data/image-files.js';
// DICOM photographs (docs/dicom-fhir.md): a frame's image for any decoder, and what a result carries about it.
export { openPhoto, dicomInfoOf, type PhotoInput, type OpenedPhoto } from './data/photo-source.js';
export { SUPPORTED_TRANSFER_SYNTAXES, type DicomPhotoInfo, type DicomIdentifiers } from './data/dicom.js';
// Results as a FHIR R4 Bundle (a DiagnosticReport per photograph, an Observation per class).
export { fhirBundle, type FhirModel } from './serve/fhir.js';
export { preprocessImage, describePreprocess, DEFAULT_PREPROCESS, type PreprocessSettings, type PreprocessedImage } from './data/preprocess.js';
export { toPhotoCoordinates, type CropGeometry } from './data/geometry.js';
export { readDataset, readLabelsCsv, type CsvFormat, type DataIssue, type ParsedLabels, type ParseOptions } from './data/csv.js';
export { CLASSES, isGraded, type ClassName, type Dataset, type LabelledImage } from './data/labels.js';
export { checkDataset, type CheckReport, type CheckOptions } from './data/check.js';
export {
  makeSplit,
  readSplit,
  readSplitParts,
  PART_NAMES,
  type PartName,
  type PartCounts,
  type MakeSplitOptions,
  type Split,
  type SplitParts,
  type SplitFile,
} from './data/split.js';
// What `fundus data split` (and `fundus train` without --split) runs: repeat photographs grouped, then stratified.
export { splitDataset, SPLIT_DEFAULTS, type SplitDatasetOptions } from './data/split-dataset.js';
export type { AugmentSettings } from './data/augment.js';
export { assessGradability, UngradableError, type Gradability, type GradabilityMeasures } from './data/gradability.js';

// Explanations.
export {
  CAM_METHODS,
  DEFAULT_CAM_METHOD,
  CamExplainer,
  isCamMethod,
  type CamMethod,
  type CamInput,
  type CamTarget,
  type CamResult,
  type CamOptions,
  type Heatmap,
} from './explain/cam.js';
export { explainerFor, computeHeatmap, defaultExplanation, layerNames, type DefaultExplanation, type Explainer } from './explain/explainer.js';
export { FusedExplainer, fuseHeatmaps } from './explain/fusion.js';
export { renderOverlay, heatmapOnPhoto, COLORMAPS, type Colormap, type OverlayOptions } from './explain/overlay.js';
export { runExplain, type ExplainJob, type ExplainManifest, type ExplainEntry, type ClassSelection, type RawFormat } from './explain/run.js';
export type { FaithfulnessOptions, FaithfulnessScore, FaithfulnessRow } from './explain/faithfulness.js';
export type { LocalisationJob, LocalisationReport, EntryLocalisation, ImageLocalisation } from './explain/localisation.js';
export type { DiscMask } from './explain/disc.js';

// Evaluation and metrics.
export {
  rocAuc,
  averagePrecision,
  rocCurve,
  precisionRecallCurve,
  countsAtThreshold,
  f1Score,
  precisionScore,
  recallScore,
  specificityScore,
  confusionMatrix,
  multilabelConfusionMatrix,
  reliabilityCurve,
  expectedCalibrationError,
  meanF1,
  type BinaryCounts,
  type RocCurve,
  type PrCurve,
  type ReliabilityBin,
  type Labels,
  type Scores,
  type Weights,
} from './metrics/metrics.js';
export { tuneThresholds, tuneThreshold, parsePolicy, describePolicy, type ThresholdPolicy, type ClassThreshold, type LabelMatrix } from './metrics/thresholds.js';
export { evaluatePredictions, type EvaluationInput } from './eval/evaluate.js';
export { loadEvaluationSet, buildReport, type DataSelection } from './eval/run.js';
export { alignToModel, domainOf, type EvaluationSet, type EvaluationDomain, type LabelSource } from './eval/dataset.js';
export { writeReport, renderReport, type ReportInput } from './eval/report.js';
export type { EvaluationMetrics, EvaluationReport, ClassReport, Metric, OverallReport, CalibrationReport, ConfusionReport } from './eval/schema.js';
export { bootstrapIntervals, DEFAULT_BOOTSTRAP, type BootstrapOptions, type Interval } from './eval/bootstrap.js';

// Embeddings and label spreading (semi-supervised, scikit-learn's LabelSpreading / LabelPropagation).
export { LabelSpreading, LabelPropagation, type SpreadingParams, type SpreadingKernel, type SemiSupervisedTargets } from './selflearn/spreading.js';
export { fromRows, type DenseMatrix } from './selflearn/matrix.js';
export type { KnnOptions } from './selflearn/knn.js';
export { embedFiles, saveEmbeddings, loadEmbeddings, type Embeddings, type EmbedOptions, type EmbeddingsSidecar } from './selflearn/embed.js';

// Training.
export { trainModel, type TrainOptions, type TrainResult, type ExtraExample } from './train/train.js';
export type { Monitor } from './train/loop.js';
export type { HistoryRow } from './train/checkpoint.js';
export type { BackboneProvenance } from './models/backbones.js';

// Errors: bad input (a file, a value) is an InputError naming the file and the problem.
export { InputError } from './util/errors.js';
