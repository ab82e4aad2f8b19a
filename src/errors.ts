/**
 * Errors thrown by maml-native. Every failure a user can cause, in TypeScript or in native
 * code, surfaces as a `MamlError` whose `code` is one of `ErrorCode` and never changes
 * between versions; the message says what was expected and what came.
 */

/** Stable error codes. Match on `err.code`, never on the message. */
export type ErrorCode =
  | 'INVALID_ARGUMENT' // a value of the wrong type, or out of its range
  | 'SHAPE_MISMATCH' // an array whose length does not match the declared shapes
  | 'NON_FINITE' // NaN or ±Infinity where it would poison a result
  | 'TOO_LARGE' // sizes whose product overflows or exceeds what can be allocated
  | 'OUT_OF_MEMORY' // an allocation failed in native code
  | 'CORRUPT_FILE' // a checkpoint or data file that cannot be parsed
  | 'IO_ERROR' // the file system refused a read or a write
  | 'BUSY' // a learner is already running an asynchronous operation
  | 'DISPOSED' // a learner (or its GPU state) was freed by dispose(); create or load a new one
  | 'NO_DEVICE' // the requested device is not available
  | 'CUDA_ERROR' // the CUDA runtime reported an error
  | 'UNSUPPORTED' // a valid request this build or backend cannot serve
  | 'NATIVE_LOAD_FAILED' // the native addon could not be loaded
  | 'MISSING_DEPENDENCY' // an optional npm package a feature needs is not installed
  | 'INTERNAL'; // a bug in maml-native: please report it

export const ERROR_CODES: readonly ErrorCode[] = [
  'INVALID_ARGUMENT',
  'SHAPE_MISMATCH',
  'NON_FINITE',
  'TOO_LARGE',
  'OUT_OF_MEMORY',
  'CORRUPT_FILE',
  'IO_ERROR',
  'BUSY',
  'DISPOSED',
  'NO_DEVICE',
  'CUDA_ERROR',
  'UNSUPPORTED',
  'NATIVE_LOAD_FAILED',
  'MISSING_DEPENDENCY',
  'INTERNAL',
];

/** The one error class of the library. `code` is stable; `message` is for people. */
export class MamlError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MamlError';
    this.code = code;
  }
}

/** Describes a value for an error message: its type, and its length for arrays. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : `the number ${value}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name ?? 'typed array';
    const len = (value as unknown as { length?: number }).length;
    return len === undefined ? name : `a ${name} of length ${len}`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

/** Converts an error thrown by the native addon (an Error with a `code`) into a MamlError. */
export function fromNative(err: unknown, stack?: string): MamlError {
  if (err instanceof MamlError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' && (ERROR_CODES as readonly string[]).includes(e.code) ? (e.code as ErrorCode) : 'INTERNAL';
  const out = new MamlError(code, message, { cause: err });
  if (stack) out.stack = `MamlError: ${message}\n${stack.split('\n').slice(1).join('\n')}`;
  return out;
}
