// The server's default limits, in a module of their own so that the CLI can show them without loading Fastify.

/** Largest accepted request body in bytes. */
export const DEFAULT_BODY_LIMIT = 20 * 1024 * 1024;
/** Predict/explain requests admitted at once (uploading, running or queued). */
export const DEFAULT_MAX_IN_FLIGHT = 32;
/** Milliseconds a predict/explain upload may take from its headers to its last byte (20 MB at ~11 Mbit/s). */
export const DEFAULT_UPLOAD_TIMEOUT = 15_000;
/** Milliseconds a predict/explain upload may pause with no body bytes arriving. */
export const DEFAULT_UPLOAD_IDLE_TIMEOUT = 5_000;
