// Adds to the model card that `fundus train` wrote (MODEL_CARD.md) what only the bundled models' script knows: the
// "External validation" section from the directory's external-validation.json (`fundus evaluate <dir> --datasets ...
// --json`), and a notes file (how the model was produced, what its data is; the notes' own "## Limitations" items join
// the card's, where the viewer shows them). Running it again replaces what it added before.
// Usage: npx tsx scripts/train-model-card.ts <model_dir> [--notes <markdown file>]
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LIMITATIONS_SECTION, MODEL_CARD, formatScore as f } from '../src/models/card.js';
import type { ModelMetadata } from '../src/models/metadata.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: npx tsx scripts/train-model-card.ts <model_dir> [--notes <file>]');
  process.exit(2);
}
const notesIdx = process.argv.indexOf('--notes');
const notes = notesIdx > 0 ? await readFile(process.argv[notesIdx + 1], 'utf8') : '';
const meta = JSON.parse(await readFile(join(dir, 'fundus.json'), 'utf8')) as ModelMetadata;
const cardPath = join(dir, MODEL_CARD);
const written = await readFile(cardPath, 'utf8').catch(() => undefined);
if (written === undefined) {
  console.error(`${cardPath}: missing: \`fundus train\` writes the model card (re-run the training command to finalise the model again)`);
  process.exit(1);
}

const ADDED = (what: string) => [`<!-- added by scripts/train-model-card.ts: ${what} -->\n`, `<!-- end: ${what} -->\n`] as const;

/** The card without what an earlier run of this script added. */
function withoutAdded(text: string): string {
  return text.replace(/<!-- added by scripts\/train-model-card\.ts: ([^>]+) -->\n[\s\S]*?<!-- end: \1 -->\n\n?/g, '');
}

/** `text` with `block` (marked as added) inserted before the section headed `heading`. */
function insertBefore(text: string, heading: string, what: string, block: string): string {
  const at = text.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`${cardPath}: no "${heading}" section`);
  const [open, close] = ADDED(what);
  return `${text.slice(0, at + 1)}${open}${block.trimEnd()}\n${close}\n${text.slice(at + 1)}`;
}

interface ExternalMetric {
  value: number | null;
  ci: [number, number] | null;
}
interface ExternalSet {
  data: { source?: string; role?: string; part?: string; csv?: string };
  imageCount: number;
  notes: string[];
  perClass: Record<string, { positives: number; negatives: number; auc: ExternalMetric }>;
}

/** Whether the model trained on the set's source: one of its training sources, or the very CSV it was trained on. */
async function trainedOn(set: ExternalSet): Promise<boolean> {
  const sources = meta.trainingData?.sources;
  if (sources) return sources.some((s) => s.role === 'train' && s.name === set.data.source);
  if (!set.data.csv) return false;
  const sha = createHash('sha256').update(await readFile(set.data.csv).catch(() => Buffer.alloc(0))).digest('hex');
  return sha === meta.trainingData?.csvSha256;
}

/** The "External validation" section from `fundus evaluate --datasets ... --json`, when the directory keeps its output. */
async function externalSection(): Promise<string> {
  const text = await readFile(join(dir, 'external-validation.json'), 'utf8').catch(() => undefined);
  if (!text) return '';
  const ev = JSON.parse(text) as { sets: ExternalSet[]; warnings: string[] };
  const rows: string[] = [];
  for (const s of ev.sets) {
    const name = s.data.source ?? '?';
    const how = s.data.role === 'external' ? 'all photographs; **never trained on**' : `held-out ${s.data.part} part${(await trainedOn(s)) ? '' : '; never trained on'}`;
    for (const [c, v] of Object.entries(s.perClass)) {
      rows.push(`| ${name} (${how}) | ${c} | ${v.positives} / ${v.negatives} | ${f(v.auc.value)} | ${v.auc.ci ? `${f(v.auc.ci[0])}–${f(v.auc.ci[1])}` : 'n/a'} |`);
    }
  }
  return (
    '## External validation\n\n' +
    'Each class on the photographs graded for it (an empty cell is "not graded"), with 95% bootstrap intervals; small ' +
    'sets give wide intervals. Every set has its own acquisition cues, so these numbers bound rather than settle how ' +
    'the model does in a new clinic.\n\n' +
    '| set | class | positives / negatives | ROC AUC | 95% interval |\n| --- | --- | --- | --- | --- |\n' +
    rows.join('\n') +
    '\n\n' +
    (ev.warnings.length
      ? `Confounding between class and source in these sets: ${ev.warnings.join('; ')}.\n`
      : 'No class is confounded with the source across these sets (the source alone predicts no class with AUC ≥ 0.7).\n')
  );
}

/** The notes split into their own sections and the items of their "## Limitations" section. */
function splitNotes(text: string): { body: string; limitations: string } {
  const m = LIMITATIONS_SECTION.exec(text);
  if (!m) return { body: text, limitations: '' };
  return { body: text.slice(0, m.index) + text.slice(m.index + m[0].length), limitations: m[1].trim() };
}

let card = withoutAdded(written);
const external = await externalSection();
if (external) card = insertBefore(card, '## Training', 'external validation', external);
const { body, limitations } = splitNotes(notes);
if (body.trim()) card = insertBefore(card, '## Intended use', 'notes', body);
if (limitations) {
  // the notes' limitations first: they know the data better than the generic ones train writes
  const at = card.indexOf('\n## Limitations\n\n');
  if (at < 0) throw new Error(`${cardPath}: no "## Limitations" section`);
  const [open, close] = ADDED('limitations');
  const start = at + '\n## Limitations\n\n'.length;
  card = `${card.slice(0, start)}${open}${limitations}\n${close}${card.slice(start)}`;
}
await writeFile(cardPath, card);
console.log(`wrote ${cardPath}`);
