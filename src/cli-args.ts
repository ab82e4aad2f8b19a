/**
 * Command-line argument helpers shared by the CLI's commands (src/cli.ts, src/jobs/*.ts).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** A mistake on the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** An integer option >= min, or its default when absent. */
export function intOption(v: string | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/** A non-negative number option, or its default when absent. */
export function numberOption(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number, got '${v}'`);
  return n;
}

/** Creates the folder a file will be written to. */
export function ensureDirFor(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
}
