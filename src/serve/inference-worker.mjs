// Entry of the server's inference thread run from the sources. Workers do not inherit the main thread's tsx loader:
// register it here, then run the TypeScript worker (see inference-pool.ts).
import { register } from 'tsx/esm/api';

register();
await import('./inference-worker.ts');
