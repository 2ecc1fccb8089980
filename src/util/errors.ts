/** Longest file name or value an error message quotes whole; longer ones keep their start and end around an ellipsis. */
export const MAX_QUOTED = 300;

/**
 * `text` cut to at most about `max` characters, its start and end kept (a path's folder and file name both tell
 * where), so that a 50 MB file name given by mistake is not echoed whole into a terminal or a log.
 */
export function truncateForMessage(text: string, max = MAX_QUOTED): string {
  if (text.length <= max) return text;
  const keep = Math.max(2, max - 30);
  const head = Math.ceil(keep * 0.6);
  const tail = keep - head;
  return `${text.slice(0, head)}…[${text.length - keep} characters]…${text.slice(text.length - tail)}`;
}

/**
 * An error caused by the user's input (a file, a flag, a value), as opposed to a bug. The CLI prints its message
 * without a stack trace and exits non-zero. `file` and `line` say where the problem is whenever that is known; a
 * very long file name is shortened in the message (`truncateForMessage`) but kept whole in `file`.
 */
export class InputError extends Error {
  readonly file?: string;
  readonly line?: number;

  constructor(message: string, where: { file?: string; line?: number } = {}) {
    const prefix = where.file ? `${truncateForMessage(where.file)}${where.line !== undefined ? `:${where.line}` : ''}: ` : '';
    super(prefix + truncateForMessage(message, 10 * MAX_QUOTED));
    this.name = 'InputError';
    this.file = where.file;
    this.line = where.line;
  }
}
