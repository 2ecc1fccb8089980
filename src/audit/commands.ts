import type { Command } from 'commander';
import { integerFrom, NON_NEGATIVE_INTEGER, optionalNumber, parseNumberOption, POSITIVE_INTEGER, POSITIVE_NUMBER } from '../util/cli-options.js';
import { resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { AuditNetwork, AuditPart } from './audit.js';

export interface AuditCommandOptions {
  datasets: string[];
  model?: string;
  part?: string;
  folds?: string;
  seed?: string;
  limitPerSource?: string;
  l2?: string;
  batchSize?: string;
  cache?: boolean;
  json?: boolean;
  out?: string;
  quiet?: boolean;
}

/** `fundus audit`: the CLI around auditSources; `network` is injectable for tests. */
export async function auditCommand(opts: AuditCommandOptions, network?: AuditNetwork): Promise<void> {
  let l2: number | undefined;
  if (opts.l2 !== undefined) {
    l2 = parseNumberOption(opts.l2, '--l2', POSITIVE_NUMBER);
  }
  const { auditSources } = await import('./audit.js');
  const { formatAudit } = await import('./text.js');
  const report = await auditSources({
    datasets: opts.datasets,
    part: (opts.part ?? 'test') as AuditPart,
    folds: optionalNumber(opts.folds, '--folds', integerFrom(2)),
    seed: optionalNumber(opts.seed, '--seed', NON_NEGATIVE_INTEGER),
    limitPerSource: optionalNumber(opts.limitPerSource, '--limit-per-source', integerFrom(2)),
    batchSize: optionalNumber(opts.batchSize, '--batch-size', POSITIVE_INTEGER),
    ...(opts.model ? { model: opts.model } : {}),
    ...(l2 !== undefined ? { l2 } : {}),
    cache: opts.cache !== false,
    quiet: opts.quiet || opts.json,
    ...(network ? { network } : {}),
  });
  const json = JSON.stringify(report, null, 2) + '\n';
  if (opts.out) await writeFileAtomic(resolve(opts.out), json);
  if (opts.json) process.stdout.write(json);
  else {
    console.log(formatAudit(report));
    if (opts.out) console.log(`\nreport: ${resolve(opts.out)}`);
  }
}

export function register(program: Command): void {
  program
    .command('audit')
    .description(
      'Audit labelled multi-source data for shortcuts: how well plain image statistics (and a model\'s embedding) ' +
        "predict the source, each class's share per source, and a model's per-class AUC within each source.",
    )
    .requiredOption('--datasets <file...>', 'datasets files (see src/data/datasets.ts); external sources are audited whole')
    .option('--model <dir>', "also audit this model: its embedding's source predictability and its AUCs within sources")
    .option('--part <part>', 'part of the training sources: train, validation, test or all', 'test')
    .option('--folds <n>', 'cross-validation folds (grouped by patient where a source names one)', '5')
    .option('--limit-per-source <n>', 'at most this many images per source (a seeded random subset)')
    .option('--seed <n>', 'seed of the subset and of the folds', '0')
    .option('--l2 <lambda>', 'L2 strength of the logistic regressions (default 1/n, i.e. sklearn C = 1)')
    .option('--batch-size <n>', 'images per forward pass with --model', '16')
    .option('--no-cache', 'do not read or write the preprocessing cache')
    .option('--json', 'print the whole report as JSON (see docs/audit.md)')
    .option('--out <report.json>', 'also write the JSON report to this file (atomically)')
    .option('--quiet', 'no progress bars')
    .addHelpText(
      'after',
      '\nExamples:\n  fundus audit --datasets datasets/train.json datasets/external.json --part test --limit-per-source 80\n' +
        '  fundus audit --datasets datasets/train.json datasets/external.json --model models/default --out runs/audit.json',
    )
    .action((opts: AuditCommandOptions) => auditCommand(opts));
}
