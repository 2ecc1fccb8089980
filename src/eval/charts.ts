import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { PrCurve, RocCurve } from '../metrics/metrics.js';
import type { CalibrationBin } from './schema.js';

/**
 * Vega-Lite specifications of the report's charts, rendered to SVG strings in Node (no browser, no network), so
 * that the HTML report is one self-contained file.
 */

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const CONFIG: vl.TopLevelSpec['config'] = {
  font: FONT,
  view: { stroke: '#d0d4da' },
  axis: { labelFontSize: 10, titleFontSize: 11, titleFontWeight: 500, gridColor: '#eceef1', domainColor: '#9aa1ab', tickColor: '#9aa1ab' },
  title: { fontSize: 12, fontWeight: 600, anchor: 'start', offset: 6, subtitleFontSize: 11, subtitleColor: '#656d76', limit: 320 },
  legend: { labelFontSize: 10, titleFontSize: 11 },
};

const ACCENT = '#1f6feb';
const MUTED = '#9aa1ab';
const MARK = '#d1242f';

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile({ ...spec, config: { ...CONFIG, ...(spec.config ?? {}) } } as vl.TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const unitAxis = (title: string): Record<string, unknown> => ({ type: 'quantitative', scale: { domain: [0, 1] }, axis: { title, tickCount: 5 } });

/** ROC curve of one class with the chance diagonal and the operating point at the model's threshold. */
export function rocSpec(title: vl.TopLevelSpec['title'], curve: RocCurve, point: { fpr: number; tpr: number } | null): vl.TopLevelSpec {
  const values = curve.fpr.map((f, i) => ({ fpr: f, tpr: curve.tpr[i] }));
  return {
    width: 200,
    height: 200,
    title,
    layer: [
      {
        data: { values: [{ fpr: 0, tpr: 0 }, { fpr: 1, tpr: 1 }] },
        mark: { type: 'line', color: MUTED, strokeDash: [4, 4], strokeWidth: 1 },
        encoding: { x: { field: 'fpr', ...unitAxis('1 − specificity') }, y: { field: 'tpr', ...unitAxis('sensitivity') } },
      },
      {
        data: { values },
        mark: { type: 'line', color: ACCENT, strokeWidth: 2, interpolate: 'linear' },
        encoding: { x: { field: 'fpr', type: 'quantitative' }, y: { field: 'tpr', type: 'quantitative' }, order: { field: 'fpr' } },
      },
      ...(point
        ? [
            {
              data: { values: [point] },
              mark: { type: 'point' as const, filled: true, color: MARK, size: 50 },
              encoding: { x: { field: 'fpr', type: 'quantitative' as const }, y: { field: 'tpr', type: 'quantitative' as const } },
            },
          ]
        : []),
    ],
  } as vl.TopLevelSpec;
}

/** Precision-recall curve (step-wise, as average precision integrates it) with the prevalence baseline. */
export function prSpec(title: vl.TopLevelSpec['title'], curve: PrCurve, prevalence: number, point: { recall: number; precision: number } | null): vl.TopLevelSpec {
  // Without sklearn's artificial end point (recall 0, precision 1), which draws a misleading spike at recall 0.
  const values = curve.recall.slice(0, -1).map((r, i) => ({ recall: r, precision: curve.precision[i] }));
  return {
    width: 200,
    height: 200,
    title,
    layer: [
      {
        data: { values: [{ recall: 0, precision: prevalence }, { recall: 1, precision: prevalence }] },
        mark: { type: 'line', color: MUTED, strokeDash: [4, 4], strokeWidth: 1 },
        encoding: { x: { field: 'recall', ...unitAxis('recall (sensitivity)') }, y: { field: 'precision', ...unitAxis('precision') } },
      },
      {
        data: { values },
        mark: { type: 'line', color: ACCENT, strokeWidth: 2, interpolate: 'step-before' },
        encoding: { x: { field: 'recall', type: 'quantitative' }, y: { field: 'precision', type: 'quantitative' }, order: { field: 'recall' } },
      },
      ...(point
        ? [
            {
              data: { values: [point] },
              mark: { type: 'point' as const, filled: true, color: MARK, size: 50 },
              encoding: { x: { field: 'recall', type: 'quantitative' as const }, y: { field: 'precision', type: 'quantitative' as const } },
            },
          ]
        : []),
    ],
  } as vl.TopLevelSpec;
}

/** Reliability diagram (fraction positive against mean predicted probability per bin) over a histogram of counts. */
export function reliabilitySpec(bins: CalibrationBin[], xTitle: string): vl.TopLevelSpec {
  const values = bins.map((b) => ({ ...b, mid: (b.lower + b.upper) / 2 }));
  return {
    vconcat: [
      {
        width: 300,
        height: 260,
        layer: [
          {
            data: { values: [{ x: 0, y: 0 }, { x: 1, y: 1 }] },
            mark: { type: 'line', color: MUTED, strokeDash: [4, 4], strokeWidth: 1 },
            encoding: { x: { field: 'x', ...unitAxis('') }, y: { field: 'y', ...unitAxis('fraction positive') } },
          },
          {
            data: { values },
            mark: { type: 'line', color: ACCENT, strokeWidth: 2, point: { filled: true, size: 40, color: ACCENT } },
            encoding: {
              x: { field: 'meanPredicted', type: 'quantitative' },
              y: { field: 'fractionPositive', type: 'quantitative' },
              order: { field: 'meanPredicted' },
            },
          },
        ],
      },
      {
        width: 300,
        height: 70,
        data: { values },
        mark: { type: 'bar', color: '#8fb3f0' },
        encoding: {
          x: { field: 'lower', type: 'quantitative', scale: { domain: [0, 1] }, axis: { title: xTitle, tickCount: 5 } },
          x2: { field: 'upper' },
          y: { field: 'count', type: 'quantitative', scale: { type: 'sqrt' }, axis: { title: 'count', tickCount: 3 } },
          y2: { datum: 0 },
        },
      },
    ],
    spacing: 4,
  } as vl.TopLevelSpec;
}

/** Lines of a training history against the epoch, one colour per series. */
export function historySpec(title: string, rows: { epoch: number; series: string; value: number }[]): vl.TopLevelSpec {
  const manySeries = new Set(rows.map((r) => r.series)).size > 10;
  return {
    width: 280,
    height: 180,
    title,
    data: { values: rows },
    mark: { type: 'line', point: { size: 18 }, strokeWidth: 2 },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', axis: { title: 'epoch', tickMinStep: 1 } },
      y: { field: 'value', type: 'quantitative', scale: { zero: false }, axis: { title: null } },
      color: { field: 'series', type: 'nominal', legend: { title: null, orient: 'bottom', direction: 'horizontal' }, scale: { scheme: manySeries ? 'tableau20' : 'tableau10' } },
    },
  } as vl.TopLevelSpec;
}

/** A confusion matrix as a heatmap with counts, rows = true class, columns = predicted class. */
export function confusionSpec(classes: string[], matrix: number[][]): vl.TopLevelSpec {
  const values = matrix.flatMap((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, j) => ({ truth: classes[i], predicted: classes[j], count, share: total > 0 ? count / total : 0 }));
  });
  const side = Math.max(180, 60 * classes.length);
  return {
    width: side,
    height: side,
    data: { values },
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: classes, axis: { title: 'predicted (top class)', labelAngle: -30 } },
      y: { field: 'truth', type: 'nominal', sort: classes, axis: { title: 'true class' } },
    },
    layer: [
      { mark: 'rect', encoding: { color: { field: 'share', type: 'quantitative', scale: { scheme: 'blues', domain: [0, 1] }, legend: { title: 'row share' } } } },
      {
        mark: { type: 'text', fontSize: 12 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: '#1f2328' },
        },
      },
    ],
  } as vl.TopLevelSpec;
}
