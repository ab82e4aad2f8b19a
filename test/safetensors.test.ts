/**
 * Tests of src/safetensors.ts: the checkpoint format, its validation, and atomic writes.
 * Run: npx vitest run test/safetensors.test.ts
 *
 * File-system failures are injected by wrapping node:fs (vi.mock below), because CI runs as
 * root, where permission bits cannot make a write fail.
 */
import { describe, it, expect, vi, beforeEach, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { getRandomValues } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MamlError, type ErrorCode } from '../src/errors.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensorsFile,
  writeFileAtomic,
  writeSafetensorsFile,
  type SafetensorsFile,
  type Tensor,
} from '../src/safetensors.js';

// ---------------------------------------------------------------------------------------------
// Fault injection: the nth call of one node:fs function fails with an errno code.
// ---------------------------------------------------------------------------------------------

type FsFault = { fn: 'openSync' | 'writeSync' | 'fsyncSync' | 'renameSync'; nth: number; code: string };
const faults = vi.hoisted(() => ({ plan: undefined as FsFault | undefined, calls: {} as Record<string, number> }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fail = (name: string, code: string): never => {
    throw Object.assign(new Error(`${code}: injected failure, ${name}`), { code, syscall: name });
  };
  const wrap = <F extends (...args: never[]) => unknown>(name: FsFault['fn'], fn: F): F =>
    ((...args: Parameters<F>) => {
      const plan = faults.plan;
      if (plan && plan.fn === name) {
        faults.calls[name] = (faults.calls[name] ?? 0) + 1;
        if (faults.calls[name] === plan.nth) {
          if (name === 'writeSync') {
            // A disk filling up mid-write: half the bytes land, then the write fails.
            const [fd, buf, off, len] = args as unknown as [number, Uint8Array, number, number];
            real.writeSync(fd, buf, off, Math.floor(len / 2));
          }
          fail(name, plan.code);
        }
      }
      return fn(...args);
    }) as F;
  const mocked = {
    ...real,
    openSync: wrap('openSync', real.openSync),
    writeSync: wrap('writeSync', real.writeSync),
    fsyncSync: wrap('fsyncSync', real.fsyncSync),
    renameSync: wrap('renameSync', real.renameSync),
  };
  return { ...mocked, default: mocked };
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const SOURCE = 'ckpt.safetensors';

/** Calls fn and checks it throws a MamlError with this code whose message holds every fragment. */
function expectMamlError(fn: () => unknown, code: ErrorCode, ...fragments: string[]): MamlError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof MamlError)) {
    throw new Error(`expected a MamlError(${code}), got ${caught === undefined ? 'no error' : String((caught as Error)?.stack ?? caught)}`);
  }
  expect(caught.code, caught.message).toBe(code);
  for (const f of fragments) expect(caught.message).toContain(f);
  return caught;
}

/** Decodes, and fails the test if anything but a MamlError escapes. Returns the error, if any. */
function decodeNeverCrashes(bytes: Uint8Array, what: string): MamlError | undefined {
  try {
    decodeSafetensors(bytes, SOURCE);
    return undefined;
  } catch (err) {
    if (!(err instanceof MamlError)) throw new Error(`${what}: decode threw a non-MamlError: ${String((err as Error)?.stack ?? err)}`);
    if (err.code !== 'CORRUPT_FILE' && err.code !== 'UNSUPPORTED') throw new Error(`${what}: unexpected code ${err.code}: ${err.message}`);
    if (!err.message.startsWith(`${SOURCE}: `)) throw new Error(`${what}: message does not name the source: ${err.message}`);
    return err;
  }
}

/** Builds a file from a header (text or object) and a data buffer, optionally space-padding the header. */
function fileWith(header: string | object, data: Uint8Array | number = 0, pad = false): Uint8Array {
  let json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  if (pad && json.length % 8 !== 0) {
    const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const body = typeof data === 'number' ? Uint8Array.from({ length: data }, (_, i) => (i * 37 + 11) & 0xff) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

/** A file whose 8-byte length prefix says `n`, followed by `rest`. */
function withLength(n: bigint, rest: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + rest.length);
  new DataView(out.buffer).setBigUint64(0, n, true);
  out.set(rest, 8);
  return out;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Random bit patterns (NaN payloads, -0, subnormals and all), never an all-zero array. */
function randomTensor(dtype: Tensor['dtype'], shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = dtype === 'F64' ? new Float64Array(n) : dtype === 'F32' ? new Float32Array(n) : new Int32Array(n);
  const raw = bytesOf(data);
  for (let i = 0; i < raw.length; i += 65536) getRandomValues(raw.subarray(i, Math.min(raw.length, i + 65536)));
  if (n > 0) raw[0]! |= 1;
  return { dtype, shape, data };
}

function randomShape(): number[] {
  const rank = Math.floor(Math.random() * 4); // 0 is a scalar
  return Array.from({ length: rank }, () => 1 + Math.floor(Math.random() * 7));
}

/** Equal names, dtypes, shapes and bit-identical data, with the first differing byte on failure. */
function expectSameTensors(got: Record<string, Tensor>, want: Record<string, Tensor>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const name of Object.keys(want)) {
    const g = got[name]!;
    const w = want[name]!;
    expect(g.dtype, name).toBe(w.dtype);
    expect(g.shape, name).toEqual(w.shape);
    expect(Object.prototype.toString.call(g.data), name).toBe(Object.prototype.toString.call(w.data));
    const gb = bytesOf(g.data);
    const wb = bytesOf(w.data);
    expect(gb.length, name).toBe(wb.length);
    const at = gb.findIndex((b, i) => b !== wb[i]);
    expect(at, `${name}: first differing byte at ${at}`).toBe(-1);
  }
}

function headerOf(bytes: Uint8Array): { n: number; text: string } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { n, text: new TextDecoder().decode(bytes.subarray(8, 8 + n)) };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'maml-safetensors-'));
}

/** A small valid file with all three dtypes and metadata, for the corruption sweeps. */
function smallValidFile(): Uint8Array {
  return encodeSafetensors(
    {
      'layers.0.weight': randomTensor('F32', [3, 2]),
      'layers.0.bias': randomTensor('F32', [3]),
      steps: randomTensor('I32', [2]),
      lr: randomTensor('F64', []),
    },
    { algorithm: 'maml', inner_steps: '5' },
  );
}

// ---------------------------------------------------------------------------------------------
// Format
// ---------------------------------------------------------------------------------------------

describe('safetensors round trip', () => {
  it('returns F32, F64 and I32 tensors bit for bit, with their metadata', () => {
    for (let trial = 0; trial < 20; trial++) {
      const tensors: Record<string, Tensor> = {};
      const dtypes = ['F32', 'F64', 'I32'] as const;
      for (let i = 0; i < 6; i++) tensors[`layers.${i}.${i % 2 ? 'bias' : 'weight'}`] = randomTensor(dtypes[(i + trial) % 3]!, randomShape());
      const metadata = { algorithm: 'maml', spec: JSON.stringify({ layers: [1, 40, 40, 1] }), seed: String(Math.random()) };
      const back = decodeSafetensors(encodeSafetensors(tensors, metadata), SOURCE);
      expectSameTensors(back.tensors, tensors);
      expect(back.metadata).toEqual(metadata);
    }
  });

  it('keeps empty tensors, scalars and a file with no tensors at all', () => {
    const tensors: Record<string, Tensor> = {
      empty: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
      empty2d: { dtype: 'F64', shape: [3, 0], data: new Float64Array(0) },
      scalar: { dtype: 'I32', shape: [], data: Int32Array.of(-7) },
      after: randomTensor('F32', [2]),
    };
    expectSameTensors(decodeSafetensors(encodeSafetensors(tensors)).tensors, tensors);
    const none = decodeSafetensors(encodeSafetensors({}));
    expect(none).toEqual({ tensors: {}, metadata: {} });
  });

  it('keeps names that are special to JavaScript objects or not ASCII', () => {
    const names = ['__proto__', 'constructor', '0', '10', '2', 'ä.gewicht', '权重', '🙂', '', 'a"b\\c\n'];
    const tensors = Object.fromEntries(names.map((n) => [n, randomTensor('F32', [2])]));
    const metadata = Object.fromEntries([['__proto__', 'x'], ['10', 'ten'], ['ключ', '🙂'], ['empty', '']]);
    const back = decodeSafetensors(encodeSafetensors(tensors, metadata));
    expectSameTensors(back.tensors, tensors);
    expect(Object.getPrototypeOf(back.tensors)).toBe(Object.prototype);
    expect(Object.keys(back.metadata).sort()).toEqual(Object.keys(metadata).sort());
    for (const k of Object.keys(metadata)) expect(back.metadata[k]).toBe(metadata[k]);
  });

  it('copies data into fresh aligned arrays that do not alias the input', () => {
    const t = { a: randomTensor('F64', [5]), b: randomTensor('I32', [3]), c: randomTensor('F32', [7]) };
    const file = encodeSafetensors(t);
    // Place the file at an odd offset so that no view of it could be aligned.
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const input = shifted.subarray(1);
    const back = decodeSafetensors(input);
    expectSameTensors(back.tensors, t);
    for (const tensor of Object.values(back.tensors)) {
      expect(tensor.data.byteOffset).toBe(0);
      expect(tensor.data.buffer.byteLength).toBe(tensor.data.byteLength);
    }
    input.fill(0xab);
    expectSameTensors(back.tensors, t);
  });

  it('reads headers written by other writers: unpadded, spaced JSON, any tensor order, extra fields', () => {
    const header = '{ "b": {"dtype": "I32", "shape": [], "data_offsets": [4, 8], "note": 1},\n  "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} }';
    const data = new Uint8Array([0x00, 0x00, 0xc0, 0x3f, 0xfe, 0xff, 0xff, 0xff]); // 1.5f, -2
    const back = decodeSafetensors(fileWith(header, data));
    expect(back.tensors.a).toEqual({ dtype: 'F32', shape: [1], data: Float32Array.of(1.5) });
    expect(back.tensors.b).toEqual({ dtype: 'I32', shape: [], data: Int32Array.of(-2) });
    expect(back.metadata).toEqual({});
  });

  it('accepts a null __metadata__ as no metadata', () => {
    const back = decodeSafetensors(fileWith({ __metadata__: null, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4));
    expect(back.metadata).toEqual({});
    expect(Object.keys(back.tensors)).toEqual(['a']);
  });
});

describe('safetensors layout', () => {
  it('matches a hand-built file byte for byte', () => {
    // One F32 tensor [1.5, -2] and one metadata entry. The header below is 85 bytes, padded
    // with 3 spaces to 88 = 0x58; 1.5f is 0x3fc00000 and -2f is 0xc0000000, stored little-endian.
    const header = '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const expected = new Uint8Array([
      0x58, 0, 0, 0, 0, 0, 0, 0,
      ...Array.from(header, (c) => c.charCodeAt(0)),
      0x20, 0x20, 0x20,
      0x00, 0x00, 0xc0, 0x3f,
      0x00, 0x00, 0x00, 0xc0,
    ]);
    expect(header.length).toBe(85);
    const got = encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float32Array.of(1.5, -2) } }, { format: 'pt' });
    expect(Array.from(got)).toEqual(Array.from(expected));
  });

  it('orders tensors as the reference writer does: F64, then F32, then I32, each by name', () => {
    const got = encodeSafetensors({
      b: { dtype: 'I32', shape: [1], data: Int32Array.of(-1) },
      z: { dtype: 'F32', shape: [1], data: Float32Array.of(1) },
      a: { dtype: 'F32', shape: [1], data: Float32Array.of(-1) },
      c: { dtype: 'F64', shape: [1], data: Float64Array.of(1) },
    });
    const header =
      '{"c":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
      '"z":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},"b":{"dtype":"I32","shape":[1],"data_offsets":[16,20]}}';
    const { n, text } = headerOf(got);
    expect(text.trimEnd()).toBe(header);
    expect(Array.from(got.subarray(8 + n))).toEqual([
      0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // 1.0 as F64
      0, 0, 0x80, 0xbf, // -1.0 as F32
      0, 0, 0x80, 0x3f, // 1.0 as F32
      0xff, 0xff, 0xff, 0xff, // -1 as I32
    ]);
  });

  it('pads the header with spaces to a multiple of 8 bytes, so every tensor is aligned', () => {
    for (let len = 1; len <= 17; len++) {
      const name = 'x'.repeat(len);
      const file = encodeSafetensors({ [name]: randomTensor('F64', [2]), [`${name}2`]: randomTensor('F32', [3]) }, { k: 'v'.repeat(len) });
      const { n, text } = headerOf(file);
      expect(n % 8).toBe(0);
      const json = text.trimEnd();
      expect(text.slice(json.length)).toMatch(/^ {0,7}$/);
      expect(JSON.parse(json)).toBeTypeOf('object');
      const header = JSON.parse(json) as Record<string, { dtype: string; data_offsets: [number, number] }>;
      for (const [key, info] of Object.entries(header)) {
        if (key === '__metadata__') continue;
        const size = info.dtype === 'F64' ? 8 : 4;
        expect((8 + n + info.data_offsets[0]) % size).toBe(0);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Validation when encoding
// ---------------------------------------------------------------------------------------------

describe('encodeSafetensors rejects bad input with INVALID_ARGUMENT', () => {
  const ok = (): Tensor => ({ dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) });
  const cases: [string, () => unknown, string][] = [
    ['a dtype that does not match the array', () => encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float64Array.of(1, 2) } }), 'Float32Array'],
    ['an I32 tensor in a Float32Array', () => encodeSafetensors({ w: { dtype: 'I32', shape: [2], data: Float32Array.of(1, 2) } }), 'Int32Array'],
    ['an unsupported dtype', () => encodeSafetensors({ w: { ...ok(), dtype: 'F16' as 'F32' } }), 'F16'],
    ['data that is a plain array', () => encodeSafetensors({ w: { ...ok(), data: [1, 2] as unknown as Float32Array } }), 'Float32Array'],
    ['a shape whose product is not the data length', () => encodeSafetensors({ w: { ...ok(), shape: [3] } }), 'holds 3 elements but data has 2'],
    ['a negative dimension', () => encodeSafetensors({ w: { ...ok(), shape: [-2] } }), 'non-negative integers'],
    ['a fractional dimension', () => encodeSafetensors({ w: { ...ok(), shape: [0.5, 4] } }), 'non-negative integers'],
    ['a NaN dimension', () => encodeSafetensors({ w: { ...ok(), shape: [NaN] } }), 'non-negative integers'],
    ['a shape that is not an array', () => encodeSafetensors({ w: { ...ok(), shape: 2 as unknown as number[] } }), 'shape'],
    ['a metadata value that is not a string', () => encodeSafetensors({ w: ok() }, { steps: 5 as unknown as string }), "metadata 'steps'"],
    ['the reserved name __metadata__', () => encodeSafetensors({ __metadata__: ok() }), 'reserved'],
    ['a name with a lone surrogate', () => encodeSafetensors({ ['a\ud800']: ok() }), 'surrogate'],
    ['a tensor that is not an object', () => encodeSafetensors({ w: null as unknown as Tensor }), "tensor 'w'"],
    ['tensors that are not an object', () => encodeSafetensors(null as unknown as Record<string, Tensor>), 'tensors'],
  ];
  it.each(cases)('rejects %s', (_what, fn, fragment) => {
    expectMamlError(fn, 'INVALID_ARGUMENT', fragment);
  });
});

// ---------------------------------------------------------------------------------------------
// Corrupt input when decoding
// ---------------------------------------------------------------------------------------------

describe('decodeSafetensors rejects corrupt files with CORRUPT_FILE naming the source', () => {
  const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const cases: [string, Uint8Array, string][] = [
    ['an empty file', new Uint8Array(0), 'too short'],
    ['a 7-byte file', new Uint8Array(7), 'too short'],
    ['a header length above 100 MB', withLength(100_000_001n, new TextEncoder().encode('{}')), 'exceeds the limit'],
    ['a header length of 2^64 - 1', withLength(2n ** 64n - 1n, new Uint8Array(16)), 'exceeds the limit'],
    ['a header length larger than the file', withLength(1000n, new TextEncoder().encode('{}      ')), 'runs past the end'],
    ['a header that is not UTF-8', withLength(4n, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 'UTF-8'],
    ['a header that is not JSON', fileWith('{"a": {"dtype": "F32",'), 'not valid JSON'],
    ['a header with text after the JSON', fileWith('{} trailing'), 'not valid JSON'],
    ['a header padded with NUL bytes', fileWith('{}\0\0\0\0\0\0'), 'not valid JSON'],
    ['a header that is a JSON array', fileWith('[]'), 'does not start with "{"'],
    ['a header that is a JSON string', fileWith('"{}"'), 'does not start with "{"'],
    ['a header with leading spaces', fileWith(' {}'), 'does not start with "{"'],
    ['a tensor entry that is an array', fileWith({ a: [0, 4] }, 4), "tensor 'a' must be an object"],
    ['a tensor entry that is null', fileWith({ a: null }), "tensor 'a' must be an object"],
    ['a tensor without dtype', fileWith({ a: { shape: [1], data_offsets: [0, 4] } }, 4), 'no string "dtype"'],
    ['a tensor whose dtype is a number', fileWith({ a: t(32 as unknown as string, [1], [0, 4]) }, 4), 'no string "dtype"'],
    ['a tensor without shape', fileWith({ a: { dtype: 'F32', data_offsets: [0, 4] } }, 4), 'no array "shape"'],
    ['a tensor whose shape is a string', fileWith({ a: t('F32', '1', [0, 4]) }, 4), 'no array "shape"'],
    ['a negative dimension', fileWith({ a: t('F32', [-1], [0, 4]) }, 4), 'not a list of non-negative integers'],
    ['a fractional dimension', fileWith({ a: t('F32', [1.5], [0, 6]) }, 6), 'not a list of non-negative integers'],
    ['a dimension that is a string', fileWith({ a: t('F32', ['1'], [0, 4]) }, 4), 'not a list of non-negative integers'],
    ['a dimension too large for a double', fileWith('{"a":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}}', 4), 'not a list'],
    ['a tensor without data_offsets', fileWith({ a: { dtype: 'F32', shape: [1] } }, 4), 'no "data_offsets" pair'],
    ['data_offsets with one number', fileWith({ a: t('F32', [1], [4]) }, 4), 'no "data_offsets" pair'],
    ['data_offsets with three numbers', fileWith({ a: t('F32', [1], [0, 4, 8]) }, 4), 'no "data_offsets" pair'],
    ['data_offsets holding strings', fileWith({ a: t('F32', [1], ['0', '4']) }, 4), 'not two non-negative integers'],
    ['negative data_offsets', fileWith({ a: t('F32', [1], [-4, 0]) }, 4), 'not two non-negative integers'],
    ['data_offsets ending before they begin', fileWith({ a: t('F32', [1], [4, 0]) }, 4), 'ending before they begin'],
    ['an unknown dtype', fileWith({ a: t('F33', [1], [0, 4]) }, 4), 'unknown dtype "F33"'],
    ['a lowercase dtype', fileWith({ a: t('f32', [1], [0, 4]) }, 4), 'unknown dtype "f32"'],
    ['offsets that disagree with shape and dtype', fileWith({ 'layers.0.weight': t('F32', [40, 1], [0, 156]) }, 156),
      "tensor 'layers.0.weight' has data_offsets [0, 156] (156 bytes) but shape [40, 1] of F32 needs 160 bytes"],
    ['a shape whose element count overflows', fileWith({ a: t('F32', [2 ** 30, 2 ** 30, 2 ** 30], [0, 4]) }, 4), 'too many elements'],
    ['sub-byte elements that do not fill whole bytes', fileWith({ a: t('F4', [3], [0, 2]) }, 2), 'whole number of bytes'],
    ['offsets past the end of the data', fileWith({ a: t('F32', [1], [8, 12]) }, 8), 'past the end of the 8-byte data buffer'],
    ['data shorter than the offsets', fileWith({ a: t('F64', [4], [0, 32]) }, 20), 'past the end'],
    ['a gap before the first tensor', fileWith({ a: t('F32', [1], [4, 8]) }, 8), 'leaves a gap (4 bytes)'],
    ['a gap between tensors', fileWith({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }, 12), "tensor 'a' ends at byte 4"],
    ['overlapping tensors', fileWith({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, 8), 'overlaps (4 bytes)'],
    ['two tensors on the same bytes', fileWith({ a: t('F32', [1], [0, 4]), b: t('I32', [1], [0, 4]) }, 4), 'overlaps'],
    ['trailing bytes after the last tensor', fileWith({ a: t('F32', [1], [0, 4]) }, 9), '5 trailing bytes'],
    ['data bytes but no tensors', fileWith({}, 8), '8 trailing bytes'],
    ['a metadata value that is a number', fileWith({ __metadata__: { steps: 5 } }), "metadata 'steps' must be a string, got 5"],
    ['a metadata value that is null', fileWith({ __metadata__: { k: null } }), "metadata 'k' must be a string"],
    ['a metadata value that is an object', fileWith({ __metadata__: { k: { v: '1' } } }), "metadata 'k' must be a string"],
    ['metadata that is an array', fileWith({ __metadata__: ['a'] }), '"__metadata__" must be an object'],
    ['metadata that is a string', fileWith({ __metadata__: 'a' }), '"__metadata__" must be an object'],
  ];

  it.each(cases)('rejects %s', (_what, bytes, fragment) => {
    const err = expectMamlError(() => decodeSafetensors(bytes, SOURCE), 'CORRUPT_FILE', fragment);
    expect(err.message.startsWith(`${SOURCE}: `)).toBe(true);
  });

  it('names a default source when none is given', () => {
    expectMamlError(() => decodeSafetensors(new Uint8Array(3)), 'CORRUPT_FILE', 'safetensors data: ');
  });

  it('rejects input that is not a Uint8Array with INVALID_ARGUMENT', () => {
    expectMamlError(() => decodeSafetensors('{}' as unknown as Uint8Array), 'INVALID_ARGUMENT', 'Uint8Array');
    expectMamlError(() => decodeSafetensors(new Int8Array(16) as unknown as Uint8Array), 'INVALID_ARGUMENT', 'Uint8Array');
  });

  it('survives JSON nested a million levels deep', () => {
    const deep = '['.repeat(1_000_000) + ']'.repeat(1_000_000);
    for (const header of [
      `{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`,
      `{"a":{"dtype":"F32","shape":[1],"data_offsets":[${deep},4]}}`,
      `{"__metadata__":{"k":${deep}}}`,
      `{"a":${deep}}`,
    ]) {
      expectMamlError(() => decodeSafetensors(fileWith(header, 4), SOURCE), 'CORRUPT_FILE', SOURCE);
    }
  });

  it('cuts long names and values short in messages', () => {
    const name = 'n'.repeat(1_000_000);
    const err = expectMamlError(() => decodeSafetensors(fileWith({ [name]: t('X'.repeat(1_000_000), [1], [0, 4]) }, 4), SOURCE), 'CORRUPT_FILE', 'unknown dtype');
    expect(err.message.length).toBeLessThan(1000);
  });
});

describe('decodeSafetensors refuses well-formed files of other dtypes with UNSUPPORTED', () => {
  it.each([
    ['F16', [3], 6],
    ['BF16', [2, 2], 8],
    ['I64', [1], 8],
    ['U8', [5], 5],
    ['BOOL', [2], 2],
    ['F8_E4M3', [4], 4],
    ['F4', [2], 1],
  ] as const)('refuses %s', (dtype, shape, bytes) => {
    const file = fileWith({ ok: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, x: { dtype, shape, data_offsets: [4, 4 + bytes] } }, 4 + bytes);
    expectMamlError(() => decodeSafetensors(file, SOURCE), 'UNSUPPORTED', `${SOURCE}: tensor 'x' has dtype ${dtype}`);
  });

  it('reports corruption before an unsupported dtype', () => {
    const file = fileWith({ x: { dtype: 'F16', shape: [3], data_offsets: [0, 6] } }, 8);
    expectMamlError(() => decodeSafetensors(file, SOURCE), 'CORRUPT_FILE', 'trailing');
  });
});

describe('decodeSafetensors never throws anything but MamlError', () => {
  it('rejects every truncation of a valid file', () => {
    const file = smallValidFile();
    decodeSafetensors(file, SOURCE);
    for (let len = 0; len < file.length; len++) {
      const err = decodeNeverCrashes(file.subarray(0, len), `prefix of ${len} bytes`);
      expect(err?.code, `prefix of ${len} bytes`).toBe('CORRUPT_FILE');
    }
  });

  it('survives every single-byte change in the length prefix and header', () => {
    const file = smallValidFile();
    const { n } = headerOf(file);
    let rejected = 0;
    for (let i = 0; i < 8 + n; i++) {
      for (const mask of [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff]) {
        const bad = file.slice();
        bad[i]! ^= mask;
        if (decodeNeverCrashes(bad, `byte ${i} ^ 0x${mask.toString(16)}`)) rejected++;
      }
    }
    expect(rejected).toBeGreaterThan((8 + n) * 5);
  });

  it('survives every field of the header replaced by hostile values', () => {
    const file = smallValidFile();
    const { n, text } = headerOf(file);
    const data = file.subarray(8 + n);
    const header = JSON.parse(text) as Record<string, Record<string, unknown>>;
    const hostile: unknown[] = [null, true, -1, 0.5, 1e300, -0, 2 ** 53, 'F32', '', [], [[]], [-1], [1, 2, 3], [2 ** 60, 2 ** 60], [0, 1e300], {}, { a: 1 }];
    for (const key of Object.keys(header)) {
      const fields = [...Object.keys(header[key]!), 'extra'];
      for (const field of [...fields, undefined]) {
        for (const value of hostile) {
          const copy = structuredClone(header);
          if (field === undefined) copy[key] = value as Record<string, unknown>;
          else copy[key]![field] = value;
          decodeNeverCrashes(fileWith(copy, data), `${key}.${field ?? ''} = ${JSON.stringify(value)}`);
        }
      }
    }
  });

  it('survives random garbage after a plausible length prefix', () => {
    for (let trial = 0; trial < 2000; trial++) {
      const rest = getRandomValues(new Uint8Array(Math.floor(Math.random() * 64)));
      if (rest.length > 0 && Math.random() < 0.5) rest[0] = 0x7b; // '{'
      const n = BigInt(Math.floor(Math.random() * (rest.length + 4)));
      decodeNeverCrashes(withLength(n, rest), `trial ${trial}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

describe('safetensors files', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
    faults.plan = undefined;
    faults.calls = {};
  });
  afterEach(() => {
    faults.plan = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a file that reads back identically, holding exactly the encoded bytes', () => {
    const tensors = { 'layers.0.weight': randomTensor('F32', [40, 1]), 'layers.0.bias': randomTensor('F32', [40]), lr: randomTensor('F64', [3]) };
    const metadata = { algorithm: 'maml' };
    const path = join(dir, 'model.safetensors');
    writeSafetensorsFile(path, tensors, metadata);
    expect(Array.from(readFileSync(path))).toEqual(Array.from(encodeSafetensors(tensors, metadata)));
    const back: SafetensorsFile = readSafetensorsFile(path);
    expectSameTensors(back.tensors, tensors);
    expect(back.metadata).toEqual(metadata);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('replaces an existing file', () => {
    const path = join(dir, 'model.safetensors');
    writeFileSync(path, 'old contents');
    writeFileAtomic(path, Uint8Array.of(1, 2, 3));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3]);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('reports a missing file as IO_ERROR', () => {
    const path = join(dir, 'missing.safetensors');
    expectMamlError(() => readSafetensorsFile(path), 'IO_ERROR', path, 'no such file');
  });

  it('reports a directory in place of a file as IO_ERROR', () => {
    expectMamlError(() => readSafetensorsFile(dir), 'IO_ERROR', dir);
  });

  it('reports a corrupt file as CORRUPT_FILE naming its path', () => {
    const path = join(dir, 'bad.safetensors');
    const file = smallValidFile();
    writeFileSync(path, file.subarray(0, file.length - 1));
    expectMamlError(() => readSafetensorsFile(path), 'CORRUPT_FILE', `${path}: `, 'past the end');
  });

  it('refuses to write into a directory that does not exist, creating nothing', () => {
    const path = join(dir, 'no', 'such', 'model.safetensors');
    expectMamlError(() => writeFileAtomic(path, Uint8Array.of(1)), 'IO_ERROR', path, 'does not exist');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses to write below a path that is a file', () => {
    writeFileSync(join(dir, 'file'), 'x');
    expectMamlError(() => writeFileAtomic(join(dir, 'file', 'model.safetensors'), Uint8Array.of(1)), 'IO_ERROR');
    expect(readdirSync(dir)).toEqual(['file']);
  });

  it('leaves a directory at the target untouched and no temporary file behind', () => {
    const path = join(dir, 'model.safetensors');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'keep');
    expectMamlError(() => writeSafetensorsFile(path, { w: randomTensor('F32', [4]) }), 'IO_ERROR', path);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
    expect(readdirSync(path)).toEqual(['inside']);
    expect(readFileSync(join(path, 'inside'), 'utf8')).toBe('keep');
  });

  it.each([
    { fn: 'openSync', nth: 1, code: 'EACCES' },
    { fn: 'writeSync', nth: 1, code: 'ENOSPC' },
    { fn: 'fsyncSync', nth: 1, code: 'EIO' },
    { fn: 'renameSync', nth: 1, code: 'EXDEV' },
  ] as FsFault[])('keeps the old file when $fn fails with $code, and removes the temporary file', (fault) => {
    const path = join(dir, 'model.safetensors');
    const old = encodeSafetensors({ w: randomTensor('F32', [8]) }, { version: 'old' });
    writeFileSync(path, old);
    faults.plan = fault;
    const err = expectMamlError(() => writeSafetensorsFile(path, { w: randomTensor('F32', [1000]) }, { version: 'new' }), 'IO_ERROR', path, fault.code);
    faults.plan = undefined;
    expect(faults.calls[fault.fn]).toBe(fault.nth);
    expect((err.cause as { code?: string }).code).toBe(fault.code);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
    expect(Array.from(readFileSync(path))).toEqual(Array.from(old));
    expect(readSafetensorsFile(path).metadata).toEqual({ version: 'old' });
  });

  it('ignores a directory that cannot be flushed on this platform (EINVAL, EISDIR)', () => {
    for (const code of ['EINVAL', 'EISDIR']) {
      const path = join(dir, `model-${code}.safetensors`);
      faults.calls = {};
      faults.plan = { fn: 'fsyncSync', nth: 2, code }; // the first fsync is the file's, the second the directory's
      writeFileAtomic(path, Uint8Array.of(7, 8));
      faults.plan = undefined;
      expect(faults.calls.fsyncSync).toBe(2);
      expect(Array.from(readFileSync(path))).toEqual([7, 8]);
    }
    expect(readdirSync(dir).sort()).toEqual(['model-EINVAL.safetensors', 'model-EISDIR.safetensors']);
  });

  it('reports a real failure to flush the directory after the new file is in place', () => {
    const path = join(dir, 'model.safetensors');
    faults.plan = { fn: 'fsyncSync', nth: 2, code: 'EIO' };
    expectMamlError(() => writeFileAtomic(path, Uint8Array.of(9)), 'IO_ERROR', 'could not flush its directory', 'EIO');
    faults.plan = undefined;
    expect(Array.from(readFileSync(path))).toEqual([9]);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('rejects a bad path or bad bytes with INVALID_ARGUMENT', () => {
    expectMamlError(() => writeFileAtomic('', Uint8Array.of(1)), 'INVALID_ARGUMENT', 'path');
    expectMamlError(() => writeFileAtomic(join(dir, 'x'), [1] as unknown as Uint8Array), 'INVALID_ARGUMENT', 'Uint8Array');
    expectMamlError(() => readSafetensorsFile(undefined as unknown as string), 'INVALID_ARGUMENT', 'path');
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});

describe('writeFileAtomic with concurrent writers', () => {
  it('leaves one complete valid file when several processes write the same path', async () => {
    const dir = tempDir();
    try {
      // Child processes cannot load TypeScript, so hand them a plain transpile of the modules.
      const { default: ts } = await import('typescript');
      const modDir = join(dir, 'module');
      mkdirSync(modDir);
      for (const name of ['errors', 'safetensors']) {
        const source = readFileSync(fileURLToPath(new URL(`../src/${name}.ts`, import.meta.url)), 'utf8');
        const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText;
        writeFileSync(join(modDir, `${name}.js`), js);
      }
      writeFileSync(join(modDir, 'package.json'), '{"type":"module"}');
      writeFileSync(
        join(modDir, 'writer.js'),
        `import { writeSafetensorsFile } from './safetensors.js';
const [target, id, rounds, n] = process.argv.slice(2);
for (let k = 0; k < Number(rounds); k++) {
  const data = new Float64Array(Number(n)).fill(Number(id) * 1000 + k);
  writeSafetensorsFile(target, { w: { dtype: 'F64', shape: [Number(n)], data } }, { writer: id, round: String(k) });
}
`,
      );

      const outDir = join(dir, 'out');
      mkdirSync(outDir);
      const target = join(outDir, 'model.safetensors');
      const writers = 6;
      const rounds = 15;
      const elements = 100_000; // 800 kB per file
      const exits = Array.from({ length: writers }, (_, id) =>
        new Promise<{ code: number | null; stderr: string }>((resolveExit) => {
          const child = spawn(process.execPath, [join(modDir, 'writer.js'), target, String(id + 1), String(rounds), String(elements)], { stdio: ['ignore', 'ignore', 'pipe'] });
          let stderr = '';
          child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          child.on('close', (code) => resolveExit({ code, stderr }));
        }),
      );
      let running = writers;
      exits.forEach((p) => void p.then(() => running--));

      /** A file must come from one write, whole: metadata and every element agree. */
      const checkWhole = (file: SafetensorsFile): void => {
        const writer = Number(file.metadata.writer);
        const round = Number(file.metadata.round);
        expect(writer).toBeGreaterThanOrEqual(1);
        expect(writer).toBeLessThanOrEqual(writers);
        const w = file.tensors.w!;
        expect(w.shape).toEqual([elements]);
        const want = writer * 1000 + round;
        const bad = (w.data as Float64Array).findIndex((v) => v !== want);
        expect(bad, `element ${bad} of a file from writer ${writer} round ${round}`).toBe(-1);
      };

      let reads = 0;
      while (running > 0) {
        if (existsSync(target)) {
          checkWhole(readSafetensorsFile(target));
          reads++;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
      for (const { code, stderr } of await Promise.all(exits)) {
        expect(stderr).toBe('');
        expect(code).toBe(0);
      }
      checkWhole(readSafetensorsFile(target));
      expect(readdirSync(outDir)).toEqual(['model.safetensors']);
      expect(reads, 'reads made while the writers ran').toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
