import { basename } from 'node:path';
import type { ExplainManifest } from './run.js';

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
figure{margin:0;width:260px}figure img{width:256px;height:auto;border:1px solid #ccc}
figcaption{font-size:.8rem}.against{color:#06c}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
td:first-child,th:first-child{text-align:left}
</style></head><body>
<h1>Heatmaps</h1>
<p>Model <code>${esc(m.model)}</code>, layer <code>${esc(m.layer)}</code>, methods ${m.methods.map(esc).join(', ')},
colormap ${esc(m.colormap)} (hot = where the model found evidence). Overlays are on the original photographs.
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
  for (const im of m.images) {
    const entries = m.entries.filter((e) => e.image === im.path);
    const probs = m.classes
      .map((c, k) => {
        const pos = im.probabilities[k] >= m.thresholds[k];
        return `<span class="${pos ? 'pos' : ''}">${esc(c)} ${im.probabilities[k].toFixed(2)}</span>`;
      })
      .join(' · ');
    parts.push(`<h2>${esc(basename(im.path))}</h2><div class="probs">${probs} (bold red: at or above the threshold)</div><div class="row">`);
    if (entries.length === 0) parts.push('<p>No class selected for this image.</p>');
    for (const e of entries) {
      const f = e.faithfulness
        ? `<br>deletion ${e.faithfulness.score.deletion.toFixed(2)} (random ${e.faithfulness.random.deletion.toFixed(2)}), insertion ${e.faithfulness.score.insertion.toFixed(2)} (random ${e.faithfulness.random.insertion.toFixed(2)})`
        : '';
      parts.push(`<figure><a href="${esc(encodeURI(e.overlay))}"><img loading="lazy" src="${esc(encodeURI(e.overlay))}" alt="${esc(e.className)} ${esc(e.method)}"></a>
<figcaption class="${e.direction === 'against' ? 'against' : ''}"><b>${e.direction === 'against' ? 'against ' : ''}${esc(e.className)}</b> — ${esc(e.method)}<br>p = ${e.probability.toFixed(3)} (threshold ${e.threshold.toFixed(2)})${f}</figcaption></figure>`);
    }
    parts.push('</div>');
  }
  parts.push('</body></html>\n');
  return parts.join('\n');
}
