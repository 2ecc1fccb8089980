import { Command } from 'commander';
import { InputError } from './util/errors.js';
import { register as registerData } from './data/commands.js';
import { register as registerTrain } from './train/commands.js';
import { register as registerEval } from './eval/commands.js';
import { register as registerExplain } from './explain/commands.js';
import { register as registerSelflearn } from './selflearn/commands.js';
import { register as registerServe } from './serve/commands.js';
import { register as registerWeights } from './models/commands.js';
import { register as registerAudit } from './audit/commands.js';
import { register as registerQueue } from './queue/commands.js';

const program = new Command();
program
  .name('fundus')
  .description('Detect pathologies in retinal fundus photographs and show where they are.')
  .version('0.1.0')
  .showHelpAfterError()
  .addHelpText('after', '\nExit codes: 0 done; 1 the run found problems (data check) or failed; 2 usage errors and bad input (named\nwith the file and the problem); 3 done, but some photographs were skipped (listed).');

registerData(program);
registerTrain(program);
registerEval(program);
registerExplain(program);
registerSelflearn(program);
registerServe(program);
registerWeights(program);
registerAudit(program);
registerQueue(program);

/**
 * Usage errors (a missing argument or option, an unknown option, an invalid choice or number) exit 2 in every command,
 * as bad input does, so scripts can tell them from a run that found problems (1) or skipped photographs (3); commander
 * has printed the message (and the help) already. --help and --version exit 0.
 */
function usageErrorsExit2(cmd: Command): void {
  cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  for (const sub of cmd.commands) usageErrorsExit2(sub);
}
usageErrorsExit2(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof InputError) {
    console.error(`fundus: ${err.message}`);
    process.exit(2);
  }
  throw err;
}
