/**
 * An error caused by the user's input (a file, a flag, a value), as opposed to a bug. The CLI prints its message
 * without a stack trace and exits non-zero. `file` and `line` say where the problem is whenever that is known.
 */
export class InputError extends Error {
  readonly file?: string;
  readonly line?: number;

  constructor(message: string, where: { file?: string; line?: number } = {}) {
    const prefix = where.file ? `${where.file}${where.line !== undefined ? `:${where.line}` : ''}: ` : '';
    super(prefix + message);
    this.name = 'InputError';
    this.file = where.file;
    this.line = where.line;
  }
}
