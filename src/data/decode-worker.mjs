// Entry of a decode worker thread. Workers do not inherit the main thread's tsx loader: register it here, then run
// the TypeScript worker (see decode-pool.ts).
import { register } from 'tsx/esm/api';

register();
await import('./decode-worker.ts');
