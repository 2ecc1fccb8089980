// The targets of issue #16 as one table: for each model, its `fundus evaluate --datasets datasets/train.json
// datasets/external.json --part test --json` output (and, where given, `fundus audit --json`'s embedding source AUC).
// Usage: npx tsx benchmarks/scripts/generalisation-table.ts <label>=<evaluate.json>[,<audit.json>] ...
import { readFile } from 'node:fs/promises';

interface Metric {
  value: number | null;
  ci: [number, number] | null;
}
interface SetReport {
  data: { source?: string };
  overall: { macroAuc: Metric };
  perClass: Record<string, { auc: Metric }>;
}

const f = (m: Metric | undefined): string =>
  !m || m.value === null ? 'n/a' : `${m.value.toFixed(3)}${m.ci ? ` [${m.ci[0].toFixed(2)}, ${m.ci[1].toFixed(2)}]` : ''}`;

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error('usage: npx tsx benchmarks/scripts/generalisation-table.ts <label>=<evaluate.json>[,<audit.json>] ...');
  process.exit(2);
}
console.log('| model | HEI-MED ME (external) | mexico-b test DR | mexico-b test ME | VietAI test macro AUC | source from embedding (audit AUC) |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const arg of args) {
  const [label, files] = arg.split('=');
  const [evalFile, auditFile] = files.split(',');
  const ev = JSON.parse(await readFile(evalFile, 'utf8')) as { sets: SetReport[] };
  const set = (name: string) => ev.sets.find((s) => s.data.source === name);
  let audit = 'n/a';
  if (auditFile) {
    const a = JSON.parse(await readFile(auditFile, 'utf8')) as { model?: { embedding?: { macroAuc: number } } };
    audit = a.model?.embedding ? a.model.embedding.macroAuc.toFixed(3) : 'n/a';
  }
  console.log(
    `| ${label} | ${f(set('heimed')?.perClass['macular edema']?.auc)} | ${f(set('mexico-b')?.perClass['diabetic retinopathy']?.auc)} | ` +
      `${f(set('mexico-b')?.perClass['macular edema']?.auc)} | ${f(set('vietai')?.overall.macroAuc)} | ${audit} |`,
  );
}
