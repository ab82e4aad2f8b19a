/**
 * Argument checks shared by every public function. Each throws a MamlError whose message
 * names the argument, says what was expected and what came, in one template:
 *   "<where>: <name> must be <expected>, got <what came>"
 */
import { describe, MamlError, type ErrorCode } from './errors.js';

export type Precision = 'float32' | 'float64';
export type Real = Float32Array | Float64Array;

export function fail(code: ErrorCode, where: string, name: string, expected: string, got: unknown): never {
  throw new MamlError(code, `${where}: ${name} must be ${expected}, got ${describe(got)}`);
}

export function checkObject(value: unknown, where: string, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value))
    fail('INVALID_ARGUMENT', where, name, 'an object', value);
  return value as Record<string, unknown>;
}

export function checkInt(value: unknown, where: string, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    fail(
      typeof value === 'number' && Number.isInteger(value) && value > max ? 'TOO_LARGE' : 'INVALID_ARGUMENT',
      where,
      name,
      `an integer in [${min}, ${max}]`,
      value,
    );
  return value;
}

export function checkNumber(
  value: unknown,
  where: string,
  name: string,
  opts: { min?: number; max?: number; exclusiveMin?: boolean } = {},
): number {
  if (typeof value !== 'number') fail('INVALID_ARGUMENT', where, name, 'a number', value);
  if (!Number.isFinite(value)) fail('NON_FINITE', where, name, 'a finite number', value);
  const { min, max, exclusiveMin } = opts;
  if ((min !== undefined && (exclusiveMin ? value <= min : value < min)) || (max !== undefined && value > max)) {
    const lo = min === undefined ? '' : exclusiveMin ? `> ${min}` : `>= ${min}`;
    const hi = max === undefined ? '' : `<= ${max}`;
    fail('INVALID_ARGUMENT', where, name, `a number ${[lo, hi].filter(Boolean).join(' and ')}`, value);
  }
  return value;
}

export function checkBoolean(value: unknown, where: string, name: string): boolean {
  if (typeof value !== 'boolean') fail('INVALID_ARGUMENT', where, name, 'a boolean', value);
  return value;
}

export function checkOneOf<T extends string>(value: unknown, where: string, name: string, options: readonly T[]): T {
  if (typeof value !== 'string' || !(options as readonly string[]).includes(value))
    fail('INVALID_ARGUMENT', where, name, `one of ${options.map((o) => `'${o}'`).join(', ')}`, value);
  return value as T;
}

/** Index of the first non-finite element, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i; // NaN or ±Infinity
  }
  return -1;
}

/** A Float32Array (or Float64Array for float64) of the given length with finite values. */
export function checkReal(
  value: unknown,
  where: string,
  name: string,
  precision: Precision,
  length?: number,
  shape?: string,
): Real {
  const Kind = precision === 'float64' ? Float64Array : Float32Array;
  if (!(value instanceof Kind)) fail('INVALID_ARGUMENT', where, name, `a ${Kind.name}`, value);
  if (length !== undefined && value.length !== length)
    fail('SHAPE_MISMATCH', where, name, `of length ${length}${shape ? ` (${shape})` : ''}`, value);
  const bad = firstNonFinite(value);
  if (bad >= 0)
    throw new MamlError('NON_FINITE', `${where}: ${name}[${bad}] is ${value[bad]}; every value must be finite`);
  return value;
}

/** An Int32Array of class labels in [0, classes). */
export function checkLabels(value: unknown, where: string, name: string, length: number, classes: number): Int32Array {
  if (!(value instanceof Int32Array))
    fail('INVALID_ARGUMENT', where, name, 'an Int32Array of class labels (the loss is cross-entropy)', value);
  if (value.length !== length) fail('SHAPE_MISMATCH', where, name, `of length ${length}`, value);
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c < 0 || c >= classes)
      throw new MamlError('INVALID_ARGUMENT', `${where}: ${name}[${i}] is ${c}; labels must lie in [0, ${classes - 1}]`);
  }
  return value;
}

/** Number of rows of a flat [rows, width] array, or a SHAPE_MISMATCH error. */
export function rowsOf(value: Real, where: string, name: string, width: number): number {
  if (value.length % width !== 0)
    throw new MamlError(
      'SHAPE_MISMATCH',
      `${where}: ${name} has length ${value.length}, which is not a multiple of the input width ${width} (rows are flat, row-major)`,
    );
  return value.length / width;
}

export function precisionOf(value: unknown, where: string, name: string): Precision {
  if (value instanceof Float32Array) return 'float32';
  if (value instanceof Float64Array) return 'float64';
  return fail('INVALID_ARGUMENT', where, name, 'a Float32Array (or a Float64Array for float64)', value);
}
