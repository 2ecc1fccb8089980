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
  .showHelpAfterError();

registerData(program);
registerTrain(program);
registerEval(program);
registerExplain(program);
registerSelflearn(program);
registerServe(program);
registerWeights(program);
registerAudit(program);
registerQueue(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof InputError) {
    console.error(`fundus: ${err.message}`);
    process.exit(2);
  }
  throw err;
}
