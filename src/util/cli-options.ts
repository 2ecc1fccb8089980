// Parsing of the CLI's option values, shared by every command so that they all word a bad value the same way:
// `--epochs must be a positive integer (got "0")`, an InputError (exit 2, as a usage error).
import { Option, type Command } from 'commander';
import { InputError } from './errors.js';

/** What a number option accepts: a check and the words for it in the error message. */
export interface NumberRule {
  ok: (n: number) => boolean;
  /** completes "--flag must be …" */
  what: string;
}

export const POSITIVE_INTEGER: NumberRule = { ok: (n) => Number.isInteger(n) && n >= 1, what: 'a positive integer' };
export const NON_NEGATIVE_INTEGER: NumberRule = { ok: (n) => Number.isInteger(n) && n >= 0, what: 'an integer ≥ 0' };
export const POSITIVE_NUMBER: NumberRule = { ok: (n) => n > 0, what: 'a positive number' };
export const NON_NEGATIVE_NUMBER: NumberRule = { ok: (n) => n >= 0, what: 'a number ≥ 0' };
export const INTEGER: NumberRule = { ok: Number.isInteger, what: 'an integer' };

/** An integer in min..max (inclusive). */
export function integerIn(min: number, max: number): NumberRule {
  return { ok: (n) => Number.isInteger(n) && n >= min && n <= max, what: `an integer in ${min}..${max}` };
}

/** An integer of at least `min`. */
export function integerFrom(min: number): NumberRule {
  return { ok: (n) => Number.isInteger(n) && n >= min, what: `an integer ≥ ${min}` };
}

/** A number in an interval; `open` excludes the ends. */
export function numberIn(min: number, max: number, open = false): NumberRule {
  return open
    ? { ok: (n) => n > min && n < max, what: `a number in (${min}, ${max})` }
    : { ok: (n) => n >= min && n <= max, what: `a number in ${min}..${max}` };
}

/** The value of `flag` (e.g. `--epochs`) as a finite number that passes `rule`. */
export function parseNumberOption(value: string, flag: string, rule: NumberRule): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || !rule.ok(n)) throw new InputError(`${flag} must be ${rule.what} (got "${value}")`);
  return n;
}

/** A commander argument parser for `flag`: `.option('--epochs <n>', '…', numberOption('--epochs', POSITIVE_INTEGER), 40)`. */
export function numberOption(flag: string, rule: NumberRule): (value: string) => number {
  return (value) => parseNumberOption(value, flag, rule);
}

/** An optional option's value parsed after commander (undefined gives `fallback`). */
export function optionalNumber(value: string | undefined, flag: string, rule: NumberRule, fallback: number): number;
export function optionalNumber(value: string | undefined, flag: string, rule: NumberRule): number | undefined;
export function optionalNumber(value: string | undefined, flag: string, rule: NumberRule, fallback?: number): number | undefined {
  return value === undefined ? fallback : parseNumberOption(value, flag, rule);
}

/** A commander parser for a comma-separated list drawn from `allowed` (duplicates dropped, order kept). */
export function listOption<T extends string>(flag: string, allowed: readonly T[]): (value: string) => T[] {
  return (value) => {
    const items = value.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((s) => !(allowed as readonly string[]).includes(s));
    if (bad.length || items.length === 0) throw new InputError(`${flag} takes a comma-separated list of ${allowed.join(', ')} (got "${value}")`);
    return [...new Set(items)] as T[];
  };
}

/**
 * `--unlabelled <arg>`, with the American spelling `--unlabeled` accepted as well (hidden from the help, which says
 * so): users of both spellings get what they meant. Read the value with `unlabelledOf`.
 */
export function addUnlabelledOption(cmd: Command, arg: string, description: string): Command {
  return cmd
    .addOption(new Option(`--unlabelled ${arg}`, `${description} (also spelt --unlabeled)`))
    .addOption(new Option(`--unlabeled ${arg}`).hideHelp());
}

/** The value given as `--unlabelled` or `--unlabeled` (both at once is an error). */
export function unlabelledOf<T>(opts: { unlabelled?: T; unlabeled?: T }): T | undefined {
  if (opts.unlabelled !== undefined && opts.unlabeled !== undefined) throw new InputError('give --unlabelled once (--unlabeled is the same option)');
  return opts.unlabelled ?? opts.unlabeled;
}
