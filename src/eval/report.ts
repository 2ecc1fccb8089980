import sharp from 'sharp';
import { openPhoto } from '../data/photo-source.js';
import { column, countsAtThreshold, precisionOf, precisionRecallCurve, rocCurve, sensitivityOf, specificityOf } from '../metrics/metrics.js';
import { confusionSpec, historySpec, prSpec, reliabilitySpec, renderSvg, rocSpec } from './charts.js';
import { readTrainingHistory } from './history.js';
import type { TrainingHistory } from './history.js';
import type { EvaluationReport, Metric } from './schema.js';
import { writeFileAtomic } from '../util/atomic.js';

/** Everything the HTML report shows: the `--json` report plus the predictions behind it. */
export interface ReportInput {
  report: EvaluationReport;
  /** n×model classes probabilities and labels, as given to `evaluatePredictions`. */
  probs: Float32Array | Float64Array;
  labels: Uint8Array;
  images: { filename: string; path: string }[];
  /** Where to look for a training history (defaults to the model directory of the report). */
  modelDir?: string;
  /** Images per kind and class (most confident true positives, false positives, false negatives). Default 3. */
  galleryPerKind?: number;
  /** Thumbnail side in pixels. Default 110. */
  thumbnailSize?: number;
}

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const fmt = (v: number | null | undefined, digits = 3): string => (v === null || v === undefined ? '—' : v.toFixed(digits));

function metricCell(m: Metric): string {
  if (m.value === null) return `<td class="na" title="${esc(m.note ?? 'undefined')}">—</td>`;
  const ci = m.ci ? `<span class="ci">${fmt(m.ci[0], 2)}–${fmt(m.ci[1], 2)}</span>` : '';
  return `<td><span class="v">${fmt(m.value)}</span>${ci}</td>`;
}

function card(label: string, m: Metric | { value: number | null; ci: null }, hint: string): string {
  const ci = m.ci ? `95% CI ${fmt(m.ci[0])}–${fmt(m.ci[1])}` : '&nbsp;';
  return `<div class="card"><div class="label">${esc(label)}</div><div class="big">${fmt(m.value)}</div><div class="ci">${ci}</div><div class="hint">${esc(hint)}</div></div>`;
}

async function thumbnail(path: string, size: number): Promise<string | null> {
  try {
    const jpeg = await sharp((await openPhoto(path)).source).resize(size, size, { fit: 'cover' }).jpeg({ quality: 72 }).toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
  } catch {
    return null; // an unreadable image must not sink the whole report
  }
}

interface GalleryItem {
  index: number;
  p: number;
}

function pick(items: GalleryItem[], k: number, descending: boolean): GalleryItem[] {
  return [...items].sort((a, b) => (descending ? b.p - a.p : a.p - b.p) || a.index - b.index).slice(0, k);
}

async function galleryHtml(input: ReportInput, classIndex: Map<string, number>): Promise<string> {
  const { report, probs, labels, images } = input;
  const C = report.model.classes.length;
  const k = input.galleryPerKind ?? 3;
  const size = input.thumbnailSize ?? 110;
  const thumbs = new Map<string, Promise<string | null>>();
  const thumb = (path: string): Promise<string | null> => {
    let t = thumbs.get(path);
    if (!t) thumbs.set(path, (t = thumbnail(path, size)));
    return t;
  };
  const trueLabels = (i: number): string =>
    report.model.classes.filter((_, c) => labels[i * C + c] && report.scoredClasses.includes(report.model.classes[c])).join(', ') || 'none';
  const sections: string[] = [];
  for (const name of report.scoredClasses) {
    const c = classIndex.get(name)!;
    const t = report.perClass[name].threshold;
    const tp: GalleryItem[] = [];
    const fp: GalleryItem[] = [];
    const fn: GalleryItem[] = [];
    for (let i = 0; i < images.length; i++) {
      const p = probs[i * C + c];
      const y = labels[i * C + c];
      if (p >= t) (y ? tp : fp).push({ index: i, p });
      else if (y) fn.push({ index: i, p });
    }
    const rows: [string, string, GalleryItem[]][] = [
      ['true positives', 'tp', pick(tp, k, true)],
      ['false positives', 'fp', pick(fp, k, true)],
      ['false negatives', 'fn', pick(fn, k, false)],
    ];
    const rowHtml = await Promise.all(
      rows.map(async ([title, cls, items]) => {
        const figures = await Promise.all(
          items.map(async ({ index, p }) => {
            const src = await thumb(images[index].path);
            const img = src ? `<img src="${src}" width="${size}" height="${size}" alt="${esc(images[index].filename)}">` : `<div class="noimg" style="width:${size}px;height:${size}px">unreadable</div>`;
            return `<figure class="${cls}">${img}<figcaption><b>p = ${p.toFixed(3)}</b><span class="fname" title="${esc(images[index].filename)}">${esc(images[index].filename)}</span><span class="lbl">label: ${esc(trueLabels(index))}</span></figcaption></figure>`;
          }),
        );
        const body = figures.length > 0 ? figures.join('') : '<p class="empty">none</p>';
        return `<div class="grow"><h4><span class="tag ${cls}">${cls.toUpperCase()}</span> ${esc(title)} <span class="count">(${cls === 'tp' ? tp.length : cls === 'fp' ? fp.length : fn.length} in all)</span></h4><div class="strip">${body}</div></div>`;
      }),
    );
    sections.push(`<section class="gclass"><h3>${esc(name)} <span class="count">threshold ${fmt(t)}</span></h3><div class="gkinds">${rowHtml.join('')}</div></section>`);
  }
  return sections.join('\n');
}

async function historyHtml(history: TrainingHistory | null): Promise<string> {
  if (!history) return '<p class="empty">The model directory has no training history (history.csv or history.json).</p>';
  // Bookkeeping columns of src/train/history.ts are not curves; `member` tells the members of an ensemble apart.
  const skip = /^(member|time|seconds|duration|ms|step|batch|wall|images_per_second)/i;
  const plotted = history.columns.filter((c) => !skip.test(c));
  const lossCols = plotted.filter((c) => /loss/i.test(c));
  const lrCols = plotted.filter((c) => /^(lr|learning_?rate)$/i.test(c));
  const otherCols = plotted.filter((c) => !lossCols.includes(c) && !lrCols.includes(c));
  const hasMembers = history.columns.includes('member');
  const series = (cols: string[]): { epoch: number; series: string; value: number }[] =>
    history.rows.flatMap((r) =>
      cols
        .filter((c) => r[c] !== undefined)
        .map((c) => ({ epoch: r.epoch, series: hasMembers && r.member !== undefined ? `${c} (member ${r.member + 1})` : c, value: r[c] })),
    );
  const charts: string[] = [];
  if (lossCols.length > 0) charts.push(await renderSvg(historySpec('Loss', series(lossCols))));
  if (otherCols.length > 0) charts.push(await renderSvg(historySpec('Metrics', series(otherCols))));
  if (lrCols.length > 0) charts.push(await renderSvg(historySpec('Learning rate', series(lrCols))));
  return `<div class="grid">${charts.map((s) => `<div class="chart">${s}</div>`).join('')}</div><p class="src">From ${esc(history.file)} (${history.rows.length} epochs).</p>`;
}

const STYLE = `
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--accent:#1f6feb}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;background:#fff}
main{max-width:1200px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:36px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:10px 0 4px;font-weight:600}
.sub{color:var(--muted);margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:190px;background:var(--bg)}
.card .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.card .big{font-size:28px;font-weight:600;font-variant-numeric:tabular-nums}
.card .ci{font-size:12px;color:var(--muted)}
.card .hint{font-size:12px;color:var(--muted);margin-top:2px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.metrics{width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{background:var(--bg);font-weight:600;font-size:12px}
td .v{display:block;font-weight:500}
td .ci{display:block;font-size:11px;color:var(--muted)}
td.na{color:var(--muted);cursor:help}
.grid{display:flex;flex-wrap:wrap;gap:10px 18px}
.curves{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:14px 10px}
.chart svg{display:block}
.cm{display:inline-block;margin:0 18px 12px 0}
.cm table td,.cm table th{border:1px solid var(--line);text-align:center;min-width:64px}
.cm .hit{background:#dafbe1}.cm .miss{background:#ffebe9}
.cm caption{text-align:left;font-weight:600;padding-bottom:4px;white-space:nowrap}
.gclass{border-top:1px solid var(--line);padding-top:4px}
.gkinds{display:grid;grid-template-columns:repeat(3,1fr);gap:0 22px}
.strip{display:flex;gap:6px;flex-wrap:wrap}
figure{margin:0;width:110px;font-size:11px;line-height:1.3;color:var(--muted)}
figure img{display:block;border-radius:4px;border:3px solid transparent}
figure.tp img{border-color:#2da44e}figure.fp img{border-color:#d1242f}figure.fn img{border-color:#bf8700}
figcaption{margin-top:3px;overflow-wrap:anywhere}
figcaption b,figcaption .fname,figcaption .lbl{display:block}
figcaption .fname{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
figcaption b{color:var(--fg)}
.tag{display:inline-block;font-size:10px;padding:1px 6px;border-radius:10px;color:#fff;vertical-align:1px}
.tag.tp{background:#2da44e}.tag.fp{background:#d1242f}.tag.fn{background:#bf8700}
.count{color:var(--muted);font-weight:400;font-size:12px}
.empty{color:var(--muted);font-style:italic}
.notes li,.method li{color:var(--muted)}
.src{color:var(--muted);font-size:12px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;font-size:13px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
code{font-size:12px;background:var(--bg);padding:1px 4px;border-radius:4px}
`;

/** Renders the self-contained HTML report (charts as inline SVG, thumbnails as inline JPEG; no external resources). */
export async function renderReport(input: ReportInput): Promise<string> {
  const { report, probs, labels } = input;
  const C = report.model.classes.length;
  const classIndex = new Map(report.model.classes.map((c, k) => [c, k]));
  const o = report.overall;

  // Per-class curves with the operating point at the class's threshold.
  const rocCharts: string[] = [];
  const prCharts: string[] = [];
  for (const name of report.scoredClasses) {
    const k = classIndex.get(name)!;
    const y = column(labels, C, k);
    const p = column(probs, C, k);
    const m = report.perClass[name];
    const counts = countsAtThreshold(y, p, m.threshold);
    const sens = sensitivityOf(counts);
    const spec = specificityOf(counts);
    const prec = precisionOf(counts);
    const roc = rocCurve(y, p);
    rocCharts.push(
      roc
        ? await renderSvg(rocSpec({ text: name, subtitle: `ROC AUC ${fmt(m.auc.value)}` }, roc, sens !== null && spec !== null ? { fpr: 1 - spec, tpr: sens } : null))
        : `<div class="empty" style="width:250px">${esc(name)}: no ROC curve (${esc(m.auc.note ?? 'undefined')})</div>`,
    );
    const pr = precisionRecallCurve(y, p);
    prCharts.push(
      pr
        ? await renderSvg(prSpec({ text: name, subtitle: `average precision ${fmt(m.ap.value)}` }, pr, m.positives / (m.positives + m.negatives), sens !== null && prec !== null ? { recall: sens, precision: prec } : null))
        : `<div class="empty" style="width:250px">${esc(name)}: no PR curve (${esc(m.ap.note ?? 'undefined')})</div>`,
    );
  }

  const rows = report.scoredClasses
    .map((name) => {
      const m = report.perClass[name];
      return `<tr><td>${esc(name)}</td><td>${m.positives}</td><td>${m.negatives}</td><td>${fmt(m.threshold)}</td>${[m.auc, m.ap, m.f1, m.sensitivity, m.specificity, m.precision, m.f1At05].map(metricCell).join('')}<td>${fmt(m.ece)}</td></tr>`;
    })
    .join('\n');

  let confusionHtml: string;
  if (report.confusion.kind === 'full') {
    confusionHtml =
      `<div class="chart">${await renderSvg(confusionSpec(report.confusion.classes, report.confusion.matrix))}</div>` +
      (report.confusion.excludedImages > 0 ? `<p class="src">${report.confusion.excludedImages} images without exactly one of the model's classes are not in the matrix.</p>` : '');
  } else {
    const { matrices } = report.confusion;
    confusionHtml = report.confusion.classes
      .map((name) => {
        const c = matrices[name];
        return `<div class="cm"><table><caption>${esc(name)} <span class="count">@ ${fmt(report.perClass[name].threshold)}</span></caption><tr><th></th><th>pred +</th><th>pred −</th></tr><tr><th>true +</th><td class="hit">${c.tp}</td><td class="miss">${c.fn}</td></tr><tr><th>true −</th><td class="miss">${c.fp}</td><td class="hit">${c.tn}</td></tr></table></div>`;
      })
      .join('');
  }

  const calib = report.calibration;
  const reliability =
    calib.bins.length > 0
      ? await renderSvg(reliabilitySpec(calib.bins, calib.kind === 'top-label' ? 'top-class probability' : 'predicted probability'))
      : '<p class="empty">no predictions</p>';
  const history = await historyHtml(await readTrainingHistory(input.modelDir ?? report.model.dir));
  const gallery = await galleryHtml(input, classIndex);
  const b = report.bootstrap;
  const data = report.data;

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>fundus evaluation — ${esc(report.model.architecture)} on ${data.part ? esc(data.part) : esc(data.csv)}</title>
<style>${STYLE}</style></head>
<body><main>
<h1>Evaluation report</h1>
<p class="sub">${esc(report.model.architecture)} (${esc(report.model.task)}, ${esc(report.model.activation)}) on ${report.imageCount} images${data.part ? ` — part <b>${esc(data.part)}</b> of ${esc(data.split ?? '')}` : ''} · ${esc(report.createdAt)}</p>
<dl class="meta">
<dt>model</dt><dd><code>${esc(report.model.dir)}</code></dd>
<dt>labels</dt><dd><code>${esc(data.csv)}</code> (${data.format === 'pairs' ? 'filename,label' : 'multi-hot'})</dd>
<dt>images</dt><dd><code>${esc(data.images)}</code></dd>
<dt>thresholds</dt><dd>${esc(report.model.thresholdPolicy)}</dd>
<dt>intervals</dt><dd>${Math.round(b.level * 100)}% percentile bootstrap, ${b.resamples} resamples (per class: stratified by the class's label; averages: by label combination), seed ${b.seed}</dd>
</dl>
<div class="cards">
${card('Mean F1 @ 0.5', o.meanF1At05, 'contest metric')}
${card('Mean F1 @ thresholds', o.meanF1, report.model.thresholdPolicy)}
${card('Macro ROC AUC', o.macroAuc, 'threshold-free ranking')}
${card('Macro average precision', o.macroAp, 'area under PR curves')}
${o.accuracy ? card('Top-class accuracy', o.accuracy, 'softmax') : ''}
${card('Calibration error (ECE)', { value: o.ece, ci: null }, calib.kind === 'top-label' ? 'top-label, 10 bins' : 'all classes pooled, 10 bins')}
</div>
${report.notes.length > 0 ? `<ul class="notes">${report.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}

<h2>Metrics per class</h2>
<table class="metrics"><thead><tr><th>class</th><th>pos</th><th>neg</th><th>threshold</th><th>ROC AUC</th><th>avg precision</th><th>F1</th><th>sensitivity</th><th>specificity</th><th>precision</th><th>F1 @ 0.5</th><th>ECE</th></tr></thead>
<tbody>${rows}</tbody></table>
<p class="src">F1, sensitivity, specificity and precision at each class's threshold; small numbers are the ${Math.round(b.level * 100)}% interval. “—” marks a metric that is undefined on this data (hover for why).</p>

<h2>ROC curves</h2>
<div class="curves">${rocCharts.map((s) => `<div class="chart">${s}</div>`).join('')}</div>
<p class="src">Red dot: the operating point at the class's threshold. Dashed: chance.</p>

<h2>Precision–recall curves</h2>
<div class="curves">${prCharts.map((s) => `<div class="chart">${s}</div>`).join('')}</div>
<p class="src">Dashed: the precision of guessing (the class's prevalence). Red dot: the operating point.</p>

<h2>Confusion matrices</h2>
${confusionHtml}

<h2>Calibration</h2>
<div class="grid"><div class="chart">${reliability}</div>
<div style="max-width:420px"><p>Points on the dashed diagonal mean that a predicted probability of, say, 0.7 comes true 70% of the time. Below the diagonal the model is over-confident, above it under-confident. Expected calibration error: <b>${fmt(o.ece)}</b> (${calib.kind === 'top-label' ? 'top-class probability against correctness' : 'every class probability against its label'}); the bars show how many predictions fall in each bin.</p></div></div>

<h2>Training curves</h2>
${history}

<h2>Gallery</h2>
<p class="src">Per class, the most confident cases: the highest-scoring true positives (green) and false positives (red), and the positives scored lowest (false negatives, amber). Labels are the image's labels over the scored classes.</p>
${gallery}
</main></body></html>
`;
}

/** Renders the report and writes it atomically. */
export async function writeReport(path: string, input: ReportInput): Promise<void> {
  await writeFileAtomic(path, await renderReport(input));
}
