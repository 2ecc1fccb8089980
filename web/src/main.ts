import './styles.css';
import { explain, fetchModel, isDicom, photo as decodedPhoto, predict, type ExplainResponse, type GradedResponse, type ModelCard } from './api.js';
import { percent, renderBars } from './bars.js';
import { turboGradient } from './colormap.js';
import { drawOverlay, heatmapImage } from './overlay.js';

function $<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing from the page`);
  return e as T;
}

interface Heat {
  response: ExplainResponse;
  image: HTMLCanvasElement;
}

interface Panel {
  select: HTMLSelectElement;
  canvas: HTMLCanvasElement;
  prob: HTMLElement;
  download: HTMLButtonElement;
  placeholder: HTMLElement;
  /** Names the method and layer that made the map shown. */
  source: HTMLElement;
  cls: string;
  /** Bumped on every change so that a slow heatmap for a class no longer shown is dropped. */
  ticket: number;
}

const state = {
  model: undefined as ModelCard | undefined,
  file: undefined as File | undefined,
  photo: undefined as ImageBitmap | undefined,
  result: undefined as GradedResponse | undefined,
  heat: new Map<string, Promise<Heat>>(),
  /** Bumped for each new photograph, so that late answers about the previous one are ignored. */
  generation: 0,
};

const ui = {
  file: $<HTMLInputElement>('file'),
  drop: $('drop'),
  fileName: $('file-name'),
  status: $('status'),
  results: $('results'),
  summary: $('summary'),
  bars: $<HTMLUListElement>('bars'),
  downloadJson: $<HTMLButtonElement>('download-json'),
  method: $<HTMLSelectElement>('method'),
  opacity: $<HTMLInputElement>('opacity'),
  opacityValue: $<HTMLOutputElement>('opacity-value'),
  compare: $<HTMLInputElement>('compare'),
  panelB: $('panel-b'),
  photoCanvas: $<HTMLCanvasElement>('canvas-photo'),
  modelInfo: $('model-info'),
};

function panel(id: 'a' | 'b'): Panel {
  return {
    select: $<HTMLSelectElement>(`class-${id}`),
    canvas: $<HTMLCanvasElement>(`canvas-${id}`),
    prob: $(`prob-${id}`),
    download: $<HTMLButtonElement>(`download-${id}`),
    placeholder: $(`placeholder-${id}`),
    source: $(`source-${id}`),
    cls: '',
    ticket: 0,
  };
}
const panels = [panel('a'), panel('b')] as const;

function setStatus(text: string, kind: 'info' | 'error' | 'busy' = 'info'): void {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function opacity(): number {
  return Number(ui.opacity.value) / 100;
}

function heatFor(cls: string, method: string): Promise<Heat> {
  const key = `${cls}\u0000${method}`;
  let p = state.heat.get(key);
  if (!p) {
    const file = state.file!;
    p = explain(file, cls, method).then((response) => ({ response, image: heatmapImage(response.heatmap) }));
    // A failed request is not cached: choosing the class again retries it.
    p.catch(() => state.heat.delete(key));
    state.heat.set(key, p);
  }
  return p;
}

const drawn = new WeakMap<Panel, Heat | undefined>();

function repaint(p: Panel): void {
  if (!state.photo) return;
  const heat = drawn.get(p);
  drawOverlay(p.canvas, state.photo, heat ? { image: heat.image, crop: heat.response.crop } : undefined, opacity());
}

/** "layercam at block_5_add, a 28×28 map": what made the map, and how coarse it is. */
function describeSource(el: HTMLElement, h: ExplainResponse | undefined): void {
  if (!h) {
    el.replaceChildren();
    return;
  }
  const layer = Object.assign(document.createElement('code'), { textContent: h.layer });
  el.replaceChildren(`${h.method} at `, layer, `, a ${h.heatmap.width}×${h.heatmap.height} map`);
}

/** The photograph as it is, beside the maps: what a heatmap hides under its colours stays visible. */
function showPhoto(photo: ImageBitmap, name: string): void {
  drawOverlay(ui.photoCanvas, photo, undefined, 0);
  ui.photoCanvas.setAttribute('aria-label', `The photograph ${name} without overlay`);
}

async function showPanel(p: Panel): Promise<void> {
  const r = state.result;
  if (!r || !state.photo || !p.cls) return;
  const ticket = ++p.ticket;
  const generation = state.generation;
  const cls = p.cls;
  const method = ui.method.value;
  p.select.value = cls;
  p.prob.textContent = `${percent(r.probabilities[cls])} · ${r.decisions[cls] ? 'positive' : 'below threshold'}`;
  p.prob.dataset.positive = String(r.decisions[cls]);
  p.canvas.setAttribute('aria-busy', 'true');
  p.download.disabled = true;
  try {
    const heat = await heatFor(cls, method);
    if (ticket !== p.ticket || generation !== state.generation) return;
    drawn.set(p, heat);
    repaint(p);
    describeSource(p.source, heat.response);
    p.canvas.setAttribute('aria-label', `Photograph with the ${method} heatmap (layer ${heat.response.layer}) for ${cls} at ${ui.opacity.value}% strength`);
    p.canvas.dataset.class = cls;
    p.canvas.dataset.method = method;
    p.canvas.dataset.layer = heat.response.layer;
    p.download.disabled = false;
  } catch (err) {
    if (ticket !== p.ticket) return;
    setStatus(`Heatmap for ${cls} failed: ${(err as Error).message}`, 'error');
  } finally {
    if (ticket === p.ticket) p.canvas.removeAttribute('aria-busy');
  }
}

function fillClassSelect(select: HTMLSelectElement, classes: string[]): void {
  select.replaceChildren(...classes.map((c) => new Option(c, c)));
  select.disabled = false;
}

function selectClass(cls: string): void {
  panels[0].cls = cls;
  if (state.result) renderBars(ui.bars, state.result, cls, selectClass);
  void showPanel(panels[0]);
}

/**
 * The classes to explain first: pathologies decided positive, likeliest first, then the other pathologies, and
 * "normal" last (its heatmap says little).
 */
function defaultClasses(r: GradedResponse): [string, string] {
  const rank = (c: string) => (c === 'normal' ? 2 : r.decisions[c] ? 0 : 1);
  const order = [...r.classes].sort((a, b) => rank(a) - rank(b) || r.probabilities[b] - r.probabilities[a]);
  return [order[0], order[1] ?? order[0]];
}

async function loadPhoto(file: File): Promise<void> {
  const generation = ++state.generation;
  state.file = file;
  state.result = undefined;
  state.heat.clear();
  ui.fileName.textContent = file.name;
  setStatus(`Analysing ${file.name}…`, 'busy');
  ui.results.hidden = true;
  try {
    const [photo, result] = await Promise.all([
      // a DICOM file is shown as the server decodes it
      (isDicom(file) ? decodedPhoto(file).then((png) => createImageBitmap(png)) : createImageBitmap(file)).catch((err: unknown) => {
        if (isDicom(file)) throw err;
        throw new Error('this browser cannot display the file; it may not be a JPEG or PNG photograph');
      }),
      predict(file),
    ]);
    if (generation !== state.generation) return;
    state.photo = photo;
    showPhoto(photo, file.name);
    for (const p of panels) describeSource(p.source, undefined);
    delete ui.summary.dataset.ungradable;
    if (result.gradable === false) {
      // No probabilities and no heatmaps for a photograph that is not a gradable fundus photograph: its reasons instead.
      for (const p of panels) {
        p.placeholder.hidden = true;
        drawn.set(p, undefined);
        p.prob.textContent = 'ungradable';
        repaint(p);
      }
      ui.bars.replaceChildren();
      ui.summary.textContent = `Ungradable: ${result.ungradable.message}`;
      ui.summary.dataset.ungradable = 'true';
      ui.results.hidden = false;
      setStatus(`${file.name}: ungradable (${result.ungradable.message}); no diagnosis is made`, 'error');
      document.body.dataset.state = 'ungradable';
      return;
    }
    state.result = result;
    const [a, b] = defaultClasses(result);
    panels[0].cls = a;
    panels[1].cls = b;
    for (const p of panels) {
      fillClassSelect(p.select, result.classes);
      p.placeholder.hidden = true;
      drawn.set(p, undefined);
      repaint(p);
    }
    renderBars(ui.bars, result, a, selectClass);
    ui.summary.textContent = result.positive.length
      ? `Above threshold: ${result.positive.join(', ')}`
      : 'No class above its threshold';
    ui.results.hidden = false;
    setStatus(`${file.name}: ${result.image.width}×${result.image.height}, analysed in ${Math.round(result.timeMs)} ms`);
    document.body.dataset.state = 'ready';
    await Promise.all([showPanel(panels[0]), ui.compare.checked ? showPanel(panels[1]) : Promise.resolve()]);
  } catch (err) {
    if (generation !== state.generation) return;
    setStatus(`Could not analyse ${file.name}: ${(err as Error).message}`, 'error');
  }
}

function download(blob: Blob, name: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function stem(name: string): string {
  return name.replace(/\.[^.]+$/, '') || 'fundus';
}

function wire(): void {
  ui.file.addEventListener('change', () => {
    const f = ui.file.files?.[0];
    if (f) void loadPhoto(f);
  });
  // The whole page accepts a drop, so that a photograph dragged anywhere is not opened by the browser instead.
  const over = (e: DragEvent) => {
    e.preventDefault();
    ui.drop.classList.add('dragging');
  };
  document.addEventListener('dragover', over);
  document.addEventListener('dragleave', (e) => {
    if (e.target === document.documentElement || e.target === ui.drop) ui.drop.classList.remove('dragging');
  });
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    ui.drop.classList.remove('dragging');
    const f = e.dataTransfer?.files?.[0];
    if (f) void loadPhoto(f);
  });
  ui.opacity.addEventListener('input', () => {
    ui.opacityValue.textContent = `${ui.opacity.value}%`;
    for (const p of panels) repaint(p);
  });
  ui.method.addEventListener('change', () => {
    void showPanel(panels[0]);
    if (ui.compare.checked) void showPanel(panels[1]);
  });
  ui.compare.addEventListener('change', () => {
    ui.panelB.hidden = !ui.compare.checked;
    document.getElementById('panels')!.classList.toggle('two', ui.compare.checked);
    if (ui.compare.checked) void showPanel(panels[1]);
  });
  panels[0].select.addEventListener('change', () => selectClass(panels[0].select.value));
  panels[1].select.addEventListener('change', () => {
    panels[1].cls = panels[1].select.value;
    void showPanel(panels[1]);
  });
  for (const p of panels) {
    p.download.addEventListener('click', () => {
      p.canvas.toBlob((blob) => {
        if (blob) download(blob, `${stem(state.file?.name ?? 'fundus')}.${p.cls.replace(/\s+/g, '-')}.${ui.method.value}.png`);
      }, 'image/png');
    });
  }
  ui.downloadJson.addEventListener('click', () => {
    if (!state.result) return;
    const body = { file: state.file?.name, ...state.result, model: { ...state.result.model } };
    download(new Blob([JSON.stringify(body, null, 2)], { type: 'application/json' }), `${stem(state.file?.name ?? 'fundus')}.fundus.json`);
  });
}

/** What a specialist should know before trusting the numbers: what the model is and how it decides. */
function showModelCard(m: ModelCard): void {
  const rows: [string, string][] = [
    ['Architecture', m.architecture],
    ['Task', m.task],
    ['Output', m.activation === 'sigmoid' ? 'independent probability per class' : 'one class (probabilities sum to 1)'],
    ['Thresholds', m.thresholdPolicy],
    ['Input', `${m.inputShape[0]}×${m.inputShape[1]}, ${m.inputShape[2] === 1 ? 'green channel' : 'colour'}`],
    ['Created', m.createdAt ? new Date(m.createdAt).toISOString().slice(0, 10) : 'unknown'],
    ['Version', m.version],
    [
      'Heatmaps',
      `${m.defaultExplainMethod} at ${m.defaultExplainLayer ?? 'the automatically chosen layer'} by default` +
        Object.entries(m.defaultExplainLayerByClass ?? {}).map(([c, layer]) => `, ${c} at ${layer}`).join('') +
        (m.defaultExplainChosenBy ? ` (chosen by ${m.defaultExplainChosenBy})` : " (fundus's global default)"),
    ],
  ];
  const td = m.trainingData as { imageCount?: number } | undefined;
  if (td?.imageCount) rows.splice(4, 0, ['Training images', String(td.imageCount)]);
  const test = (m.metrics as { test?: { images?: number; macroAuc?: number; meanF1?: number } } | undefined)?.test;
  if (test?.macroAuc !== undefined) {
    rows.splice(5, 0, ['Held-out test', `macro AUC ${test.macroAuc.toFixed(3)}${test.meanF1 !== undefined ? `, mean F1 ${test.meanF1.toFixed(3)}` : ''}${test.images ? ` on ${test.images} photographs` : ''}`]);
  }
  const list = $('about-list');
  list.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  const limits = $('about-limits');
  limits.replaceChildren(...(m.limitations ?? []).map((text) => Object.assign(document.createElement('li'), { textContent: text })));
  $('about-limits-title').hidden = !m.limitations?.length;
  $('about').hidden = false;
}

async function start(): Promise<void> {
  $('gradient').style.background = turboGradient();
  wire();
  try {
    const m = await fetchModel();
    state.model = m;
    ui.modelInfo.textContent = `Model ${m.architecture} · ${m.task} · ${m.classes.length} classes · version ${m.version}`;
    ui.method.replaceChildren(...m.explainMethods.map((x) => new Option(x, x)));
    ui.method.value = m.defaultExplainMethod;
    showModelCard(m);
  } catch (err) {
    ui.modelInfo.textContent = 'Model unavailable';
    setStatus(`Cannot reach the fundus server: ${(err as Error).message}`, 'error');
  }
}

void start();
