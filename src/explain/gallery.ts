import { basename } from 'node:path';
import type { Interval } from '../eval/bootstrap.js';
import type { LocalisationReport } from './localisation.js';
import type { ExplainManifest } from './run.js';

const fmt = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const ci = (c: Interval, d: number) => (c ? ` <span class="ci">[${fmt(c[0], d)}, ${fmt(c[1], d)}]</span>` : '');

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/**
 * A self-contained HTML page (`index.html` in the output folder) with every overlay grouped by image, the model's
 * probabilities beside its thresholds, and the faithfulness table when it was computed. Links are relative, so the
 * folder can be zipped and sent to a specialist.
 */
export function renderGallery(m: ExplainManifest): string {
  const parts: string[] = [];
  parts.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fundus explain</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h2{font-size:1.05rem;margin:1.6rem 0 .4rem;word-break:break-all}
.probs{font-size:.85rem;color:#555}.pos{color:#b00;font-weight:600}
.row{display:flex;flex-wrap:wrap;gap:.8rem}
figure{margin:0;width:260px}figure img{width:256px;height:auto;border:1px solid #ccc;display:block}
.pic{position:relative;width:256px}.pic svg{position:absolute;left:1px;top:1px;width:256px;height:calc(100% - 2px);pointer-events:none}
.box{fill:none;stroke:#fff;stroke-width:1.5;vector-effect:non-scaling-stroke}.peak{fill:none;stroke:#0f0;stroke-width:2;vector-effect:non-scaling-stroke}
.ci{color:#777;font-size:.8em}tr.base td{color:#555;font-style:italic}
figcaption{font-size:.8rem}.against{color:#06c}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
td:first-child,th:first-child{text-align:left}table.loc td:nth-child(2),table.loc th:nth-child(2){text-align:left}
</style></head><body>
<h1>Heatmaps</h1>
<p>Model <code>${esc(m.model)}</code>, layer <code>${esc(m.layer)}</code>, methods ${m.methods.map(esc).join(', ')},
colormap ${esc(m.colormap)} (hot = where the model found evidence)${
    m.tta === 'hflip' ? '; each map is the mean of the photograph\'s and its mirror image\'s, as the model predicts with flip test-time augmentation' : ''
  }. Overlays are on the original photographs${
    m.discMask === false ? ', over the whole crop square' : ', inside the fundus disc only (the black border keeps its own pixels)'
  }.
“against normal” maps show the evidence that lowers the <i>normal</i> score.</p>`);
  if (m.faithfulness?.length) {
    parts.push(`<h2>Faithfulness (deletion ↓ / insertion ↑ area under the probability curve; random order as the yardstick)</h2>
<table><tr><th>method</th><th>n</th><th>deletion</th><th>random deletion</th><th>insertion</th><th>random insertion</th><th>deletion below random</th><th>s / heatmap</th></tr>
${m.faithfulness
  .map(
    (r) =>
      `<tr><td>${esc(r.method)}</td><td>${r.n}</td><td>${r.deletion.toFixed(3)}</td><td>${r.randomDeletion.toFixed(3)}</td><td>${r.insertion.toFixed(3)}</td><td>${r.randomInsertion.toFixed(3)}</td><td>${(100 * r.deletionWinRate).toFixed(0)}%</td><td>${r.camSeconds.toFixed(3)}</td></tr>`,
  )
  .join('\n')}</table>`);
  }
  if (m.localisation) parts.push(localisationSection(m.localisation));
  for (const im of m.images) {
    const entries = m.entries.filter((e) => e.image === im.path);
    const probs = m.classes
      .map((c, k) => {
        const pos = im.probabilities[k] >= m.thresholds[k];
        return `<span class="${pos ? 'pos' : ''}">${esc(c)} ${im.probabilities[k].toFixed(2)}</span>`;
      })
      .join(' · ');
    parts.push(`<h2>${esc(basename(im.path))}</h2><div class="probs">${probs} (bold red: at or above the threshold)</div><div class="row">`);
    parts.push(`<figure><div class="pic"><a href="${esc(encodeURI(im.photo))}"><img loading="lazy" src="${esc(encodeURI(im.photo))}" alt="the photograph without overlay"></a>${boxesSvg(im, undefined)}</div>
<figcaption><b>photograph</b> — no overlay${im.localisation ? '; white boxes: the expert\'s lesions' : ''}</figcaption></figure>`);
    if (entries.length === 0) parts.push('<p>No class selected for this image.</p>');
    for (const e of entries) {
      const f = e.faithfulness
        ? `<br>deletion ${e.faithfulness.score.deletion.toFixed(2)} (random ${e.faithfulness.random.deletion.toFixed(2)}), insertion ${e.faithfulness.score.insertion.toFixed(2)} (random ${e.faithfulness.random.insertion.toFixed(2)})`
        : '';
      const loc = e.localisation
        ? `<br>pointing ${e.localisation.pointing === 1 ? 'hit' : e.localisation.pointing === 0 ? 'miss' : fmt(e.localisation.pointing, 2)}, energy in boxes ${fmt(e.localisation.energy, 2)} (uniform ${fmt(im.localisation?.boxShare ?? NaN, 2)})${e.localisation.peakOffDisc ? ', maximum off the disc' : ''}`
        : '';
      parts.push(`<figure><div class="pic"><a href="${esc(encodeURI(e.overlay))}"><img loading="lazy" src="${esc(encodeURI(e.overlay))}" alt="${esc(e.className)} ${esc(e.method)}"></a>${boxesSvg(im, e.localisation?.peak, m.localisation?.tolerancePx)}</div>
<figcaption class="${e.direction === 'against' ? 'against' : ''}"><b>${e.direction === 'against' ? 'against ' : ''}${esc(e.className)}</b> — ${esc(e.method)} at <code>${esc(e.layer)}</code><br>p = ${e.probability.toFixed(3)} (threshold ${e.threshold.toFixed(2)})${f}${loc}</figcaption></figure>`);
    }
    parts.push('</div>');
  }
  parts.push('</body></html>\n');
  return parts.join('\n');
}

/** The lesion boxes (white) and the map's maximum (green ring, radius the pointing tolerance) over an overlay, in photo pixels. */
function boxesSvg(im: ExplainManifest['images'][number], peak: [number, number] | undefined, tolerance = 0): string {
  const loc = im.localisation;
  if (!loc) return '';
  const { width, height } = im.geometry;
  const rects = loc.boxes
    .map((b) => `<rect class="box" x="${b.x0}" y="${b.y0}" width="${b.x1 - b.x0}" height="${b.y1 - b.y0}"><title>${esc(b.lesion)}</title></rect>`)
    .join('');
  const r = Math.max(tolerance, 0.012 * Math.max(width, height));
  const mark = peak && Number.isFinite(peak[0]) ? `<circle class="peak" cx="${peak[0].toFixed(1)}" cy="${peak[1].toFixed(1)}" r="${r.toFixed(1)}"/>` : '';
  return `<svg viewBox="0 0 ${width} ${height}" preserveAspectRatio="none" aria-hidden="true">${rects}${mark}</svg>`;
}

/** The localisation table: per class and method, with the two baselines under each class's methods. */
function localisationSection(r: LocalisationReport): string {
  const rows = r.rows
    .map((row) => {
      const base = row.peakOffDisc === undefined;
      return `<tr class="${base ? 'base' : ''}"><td>${row.direction === 'against' ? 'against ' : ''}${esc(row.className)}</td><td>${esc(row.method)}</td><td>${row.n}</td>` +
        `<td>${fmt(row.pointing, 2)}${ci(row.pointingCi, 2)}</td><td>${fmt(row.energy, 3)}${ci(row.energyCi, 3)}</td><td>${fmt(row.energyRatio, 2)}×${ci(row.energyRatioCi, 2)}</td>` +
        `<td>${base ? '' : row.peakOffDisc}</td><td>${base ? '' : `${row.predictedPositive}/${row.n}`}</td></tr>`;
    })
    .join('\n');
  return `<h2>Localisation against lesion boxes</h2>
<p>Boxes from <code>${esc(basename(r.lesions))}</code> (${r.lesionTypes.map(esc).join(', ')}; ${r.boxes} boxes on ${r.imagesWithBoxes} photographs${
    r.imagesWithoutBoxes ? `; ${r.imagesWithoutBoxes} photographs without boxes are not scored` : ''
  }), ground truth for <b>${esc(r.lesionClass)}</b>. <i>Pointing game</i>: the share of maps whose maximum on the fundus disc lies in a box or
within ${r.tolerancePx} photo pixels of one. <i>Energy in boxes</i>: the share of the map's sum over the disc that lies inside the boxes;
<i>× uniform</i> divides it by the boxes' share of the disc. Baselines: a centre prior (a Gaussian at the disc centre, σ = ${r.centrePriorSigma} of the
crop's side) and a uniform map over the disc (chance). Brackets: ${Math.round(100 * r.bootstrap.level)} % bootstrap intervals over photographs.
<i>Peak off disc</i>: maps whose maximum lies in the black border (hidden by the masked overlay). In the figures below, white boxes are the
lesions and the green ring marks the map's maximum.</p>
<table class="loc"><tr><th>class</th><th>method</th><th>n</th><th>pointing game</th><th>energy in boxes</th><th>× uniform</th><th>peak off disc</th><th>predicted positive</th></tr>
${rows}</table>`;
}
