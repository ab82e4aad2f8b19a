/**
 * The safetensors checkpoint format, read and written in plain TypeScript.
 *
 * Layout of a file (https://github.com/huggingface/safetensors):
 *   bytes [0, 8)        N, the header length, an unsigned 64-bit little-endian integer
 *   bytes [8, 8 + N)    a UTF-8 JSON object, padded with spaces so that 8 + N is a multiple of 8
 *   bytes [8 + N, end)  the data buffer: every tensor's elements, little-endian, row-major,
 *                       laid end to end with no gaps, no overlaps and nothing after the last one
 * The header maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
 * (offsets relative to the data buffer) and may hold `"__metadata__"`, a string-to-string map.
 *
 * The writer orders tensors as the reference Rust writer does (F64, then F32, then I32, each
 * group by name), so every tensor is naturally aligned within the file, and lists them in the
 * header in that order after the metadata (whose keys it sorts). Readers accept any order. Decoding trusts nothing: every malformed input
 * gives a `MamlError('CORRUPT_FILE')` naming the source, never a crash or another error type.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { MamlError, describe } from './errors.js';

/** Element types this library reads and writes. */
export type DType = 'F32' | 'F64' | 'I32';

/** One named array: its element type, its shape (row-major) and its elements. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array;
}

/** The decoded contents of a safetensors file. */
export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

const HEADER_LENGTH_BYTES = 8;
/** The reference implementation refuses headers above 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

/** The typed array each supported dtype is stored in. */
/** `rank` is the reference writer's order (descending Dtype enum: F64, then F32, then I32). */
const SUPPORTED: Record<DType, { tag: string; bytes: number; rank: number }> = {
  F64: { tag: 'Float64Array', bytes: 8, rank: 0 },
  F32: { tag: 'Float32Array', bytes: 4, rank: 1 },
  I32: { tag: 'Int32Array', bytes: 4, rank: 2 },
};

/**
 * Element sizes in bits of every dtype the format defines. Dtypes here but not in SUPPORTED
 * are well-formed (the layout is still checked) and give UNSUPPORTED; anything else is CORRUPT_FILE.
 */
const KNOWN_DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32,
  I64: 64, U64: 64, F64: 64, C64: 64,
  F4: 4, F6_E2M3: 6, F6_E3M2: 6,
};

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);
}

/** True when `s` holds a lone UTF-16 surrogate, which cannot be encoded as UTF-8. */
function hasLoneSurrogate(s: string): boolean {
  return /\p{Cs}/u.test(s);
}

function typedArrayTag(value: unknown): string | undefined {
  return ArrayBuffer.isView(value) ? (value as unknown as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] : undefined;
}

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.map((d) => String(d)).join(', ')}]`;
}

/** Product of non-negative safe integers, or undefined when it exceeds Number.MAX_SAFE_INTEGER. */
function elementCount(shape: readonly number[]): number | undefined {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/**
 * Serialises tensors and string metadata to the bytes of a safetensors file.
 *
 * Tensors are laid out F64 first, then F32, then I32, each group by name, after a header
 * padded with spaces to a multiple of 8 bytes, so every tensor is aligned to its element size
 * in the file. Elements are written little-endian whatever the host.
 *
 * @throws MamlError `INVALID_ARGUMENT` when a dtype does not match its typed array, a shape is
 *   not a list of non-negative integers whose product is the data length, a name is
 *   `"__metadata__"` or not encodable, or a metadata value is not a string;
 *   `TOO_LARGE` when the file would not fit in memory.
 * @example
 * ```ts
 * const bytes = encodeSafetensors(
 *   { 'layers.0.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array(6) } },
 *   { algorithm: 'maml' },
 * );
 * ```
 */
export function encodeSafetensors(tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array {
  if (!isPlainObject(tensors)) {
    throw new MamlError('INVALID_ARGUMENT', `encodeSafetensors: tensors must be an object mapping names to tensors, got ${describe(tensors)}`);
  }
  if (!isPlainObject(metadata)) {
    throw new MamlError('INVALID_ARGUMENT', `encodeSafetensors: metadata must be an object mapping keys to strings, got ${describe(metadata)}`);
  }

  // 1. Validate every tensor and every metadata entry.
  const entries: { name: string; tensor: Tensor; rank: number; byteLength: number }[] = [];
  for (const name of Object.keys(tensors)) {
    const where = `encodeSafetensors: tensor '${name}'`;
    if (name === METADATA_KEY) throw new MamlError('INVALID_ARGUMENT', `${where}: the name "${METADATA_KEY}" is reserved for metadata`);
    if (hasLoneSurrogate(name)) throw new MamlError('INVALID_ARGUMENT', `${where}: the name holds a lone UTF-16 surrogate and cannot be written as UTF-8`);
    const tensor = tensors[name] as unknown;
    if (!isPlainObject(tensor)) throw new MamlError('INVALID_ARGUMENT', `${where} must be an object { dtype, shape, data }, got ${describe(tensor)}`);
    const { dtype, shape, data } = tensor;
    if (typeof dtype !== 'string' || !Object.hasOwn(SUPPORTED, dtype)) {
      throw new MamlError('INVALID_ARGUMENT', `${where}: dtype must be one of ${Object.keys(SUPPORTED).join(', ')}, got ${describe(dtype)}`);
    }
    const spec = SUPPORTED[dtype as DType];
    if (typedArrayTag(data) !== spec.tag) {
      throw new MamlError('INVALID_ARGUMENT', `${where}: dtype ${dtype} needs its data in a ${spec.tag}, got ${describe(data)}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new MamlError('INVALID_ARGUMENT', `${where}: shape must be an array of non-negative integers, got ${Array.isArray(shape) ? fmtShape(shape) : describe(shape)}`);
    }
    const length = (data as Float32Array).length;
    const count = elementCount(shape as number[]);
    if (count !== length) {
      throw new MamlError('INVALID_ARGUMENT', `${where}: shape ${fmtShape(shape)} holds ${count ?? 'too many'} elements but data has ${length}`);
    }
    entries.push({ name, tensor: tensor as unknown as Tensor, rank: spec.rank, byteLength: length * spec.bytes });
  }
  const metaKeys = Object.keys(metadata).sort();
  for (const key of metaKeys) {
    const value = metadata[key] as unknown;
    if (typeof value !== 'string') {
      throw new MamlError('INVALID_ARGUMENT', `encodeSafetensors: metadata '${key}' must be a string, got ${describe(value)}`);
    }
    if (hasLoneSurrogate(key) || hasLoneSurrogate(value)) {
      throw new MamlError('INVALID_ARGUMENT', `encodeSafetensors: metadata '${key}' holds a lone UTF-16 surrogate and cannot be written as UTF-8`);
    }
  }

  // 2. Lay out as the reference writer does: F64, F32, I32, each by name (UTF-16 code unit
  // order, which is byte order for names within the Basic Multilingual Plane). Largest elements
  // first, after a header padded to 8 bytes, puts every tensor on its natural alignment.
  entries.sort((a, b) => a.rank - b.rank || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const parts: string[] = [];
  if (metaKeys.length > 0) {
    // Built by hand: JSON.stringify of an object would move integer-like keys to the front.
    const meta = metaKeys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',');
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${meta}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const info = { dtype: e.tensor.dtype, shape: e.tensor.shape, data_offsets: [offset, offset + e.byteLength] };
    parts.push(`${JSON.stringify(e.name)}:${JSON.stringify(info)}`);
    offset += e.byteLength;
  }
  const dataBytes = offset;
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerBytes = Math.ceil(json.length / 8) * 8;
  const total = HEADER_LENGTH_BYTES + headerBytes + dataBytes;

  // 3. Write length, header, padding, data.
  let out: Uint8Array;
  try {
    if (!Number.isSafeInteger(total)) throw new RangeError('size overflows');
    out = new Uint8Array(total);
  } catch (err) {
    throw new MamlError('TOO_LARGE', `encodeSafetensors: a file of ${total} bytes cannot be allocated`, { cause: err });
  }
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes), true);
  out.set(json, HEADER_LENGTH_BYTES);
  out.fill(0x20, HEADER_LENGTH_BYTES + json.length, HEADER_LENGTH_BYTES + headerBytes);
  let pos = HEADER_LENGTH_BYTES + headerBytes;
  for (const e of entries) {
    writeLittleEndian(e.tensor, out, view, pos);
    pos += e.byteLength;
  }
  return out;
}

function writeLittleEndian(tensor: Tensor, out: Uint8Array, view: DataView, pos: number): void {
  const data = tensor.data;
  if (HOST_IS_LITTLE_ENDIAN) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
    return;
  }
  const n = data.length;
  if (tensor.dtype === 'F64') for (let i = 0; i < n; i++) view.setFloat64(pos + 8 * i, data[i] as number, true);
  else if (tensor.dtype === 'F32') for (let i = 0; i < n; i++) view.setFloat32(pos + 4 * i, data[i] as number, true);
  else for (let i = 0; i < n; i++) view.setInt32(pos + 4 * i, data[i] as number, true);
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses the bytes of a safetensors file. Tensor data is copied into fresh typed arrays (so
 * they are aligned and do not keep `bytes` alive); header and layout are checked completely.
 *
 * @param bytes The whole file.
 * @param source Names the input in error messages, usually its path.
 * @throws MamlError `CORRUPT_FILE` for any malformed input (truncated, bad header, bad
 *   offsets, gaps, overlaps, trailing bytes, ...), with a message naming `source` and the
 *   fault; `UNSUPPORTED` for a well-formed file holding a dtype other than F32, F64 or I32;
 *   `INVALID_ARGUMENT` when `bytes` is not a Uint8Array.
 * @example
 * ```ts
 * const { tensors, metadata } = decodeSafetensors(bytes, 'model.safetensors');
 * const w = tensors['layers.0.weight']; // { dtype: 'F32', shape: [40, 1], data: Float32Array }
 * ```
 */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors data'): SafetensorsFile {
  if (typedArrayTag(bytes) !== 'Uint8Array') {
    throw new MamlError('INVALID_ARGUMENT', `decodeSafetensors: bytes must be a Uint8Array, got ${describe(bytes)}`);
  }
  const corrupt = (what: string): MamlError => new MamlError('CORRUPT_FILE', `${source}: ${what}`);

  // 1. Header length and header text.
  if (bytes.length < HEADER_LENGTH_BYTES) {
    throw corrupt(`file is ${bytes.length} bytes long, too short to hold the 8-byte header length (truncated file?)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw corrupt(`header length ${headerLen} exceeds the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  }
  const n = Number(headerLen);
  if (HEADER_LENGTH_BYTES + n > bytes.length) {
    throw corrupt(`header length ${n} runs past the end of the file (${bytes.length} bytes; truncated file?)`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(HEADER_LENGTH_BYTES, HEADER_LENGTH_BYTES + n));
  } catch {
    throw corrupt('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw corrupt('header does not start with "{" (not a safetensors file?)');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw corrupt(`header is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isPlainObject(header)) throw corrupt('header is not a JSON object');

  // 2. Metadata and per-tensor fields.
  const metadata: [string, string][] = [];
  const entries: Entry[] = [];
  for (const name of Object.keys(header)) {
    const value = header[name];
    if (name === METADATA_KEY) {
      if (value === null) continue;
      if (!isPlainObject(value)) throw corrupt(`"${METADATA_KEY}" must be an object of strings, got ${jsonType(value)}`);
      for (const key of Object.keys(value)) {
        const v = value[key];
        if (typeof v !== 'string') throw corrupt(`metadata ${nm(key)} must be a string, got ${jsonType(v)}`);
        metadata.push([key, v]);
      }
      continue;
    }
    entries.push(parseEntry(name, value, corrupt));
  }
  const dataStart = HEADER_LENGTH_BYTES + n;
  const dataLength = bytes.length - dataStart;

  // 3. Sizes and ranges of each tensor.
  for (const e of entries) {
    const bits = KNOWN_DTYPE_BITS[e.dtype] as number;
    const count = elementCount(e.shape);
    const needBits = count === undefined ? undefined : count * bits;
    const need = needBits === undefined || !Number.isSafeInteger(needBits) ? undefined : needBits / 8;
    const span = `tensor ${nm(e.name)} has data_offsets [${e.begin}, ${e.end}]`;
    if (need === undefined) throw corrupt(`${span} but shape ${fmtShape(e.shape)} of ${e.dtype} has too many elements`);
    if (!Number.isInteger(need)) throw corrupt(`${span} but shape ${fmtShape(e.shape)} of ${e.dtype} does not fill a whole number of bytes`);
    if (e.end - e.begin !== need) {
      throw corrupt(`${span} (${e.end - e.begin} bytes) but shape ${fmtShape(e.shape)} of ${e.dtype} needs ${need} bytes`);
    }
    if (e.end > dataLength) {
      throw corrupt(`${span}, past the end of the ${dataLength}-byte data buffer (truncated file?)`);
    }
  }

  // 4. Layout: contiguous from 0, no gaps, no overlaps, nothing after the last tensor.
  const ordered = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: Entry | undefined;
  for (const e of ordered) {
    if (e.begin !== cursor) {
      const after = previous ? `tensor ${nm(previous.name)} ends at byte ${cursor}` : 'the data buffer starts at byte 0';
      const fault = e.begin < cursor ? `overlaps (${cursor - e.begin} bytes)` : `leaves a gap (${e.begin - cursor} bytes)`;
      throw corrupt(`tensor ${nm(e.name)} starts at byte ${e.begin} but ${after}: it ${fault}`);
    }
    cursor = e.end;
    previous = e;
  }
  if (cursor !== dataLength) {
    throw corrupt(`data buffer is ${dataLength} bytes but the tensors cover ${cursor}: ${dataLength - cursor} trailing bytes`);
  }

  // 5. Only now, a well-formed file: refuse dtypes we cannot hold, then copy the data.
  for (const e of entries) {
    if (!Object.hasOwn(SUPPORTED, e.dtype)) {
      throw new MamlError('UNSUPPORTED', `${source}: tensor ${nm(e.name)} has dtype ${e.dtype}; only ${Object.keys(SUPPORTED).join(', ')} are supported`);
    }
  }
  const tensors = entries.map((e): [string, Tensor] => [e.name, readTensor(e, bytes, view, dataStart)]);
  // Object.fromEntries defines own properties, so a tensor named "__proto__" stays a tensor.
  return { tensors: Object.fromEntries(tensors), metadata: Object.fromEntries(metadata) };
}

/** A tensor name or metadata key for a message, quoted and cut short. */
function nm(name: string): string {
  return `'${name.length > 120 ? name.slice(0, 120) + '…' : name}'`;
}

/** A JSON string, cut short: names and values from a hostile header can be megabytes long. */
function quote(s: string, max = 120): string {
  return JSON.stringify(s.length > max ? s.slice(0, max) + '…' : s);
}

/** Describes a parsed JSON value for a message, without recursing (a hostile array may be nested a million deep). */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${quote(value, 40)}`;
  if (Array.isArray(value)) {
    const scalar = value.length <= 8 && value.every((v) => v === null || (typeof v !== 'object' && typeof v !== 'string'));
    return scalar ? `[${value.map(String).join(', ')}]` : `an array of length ${value.length}`;
  }
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function parseEntry(name: string, value: unknown, corrupt: (what: string) => MamlError): Entry {
  const where = `tensor ${nm(name)}`;
  if (!isPlainObject(value)) throw corrupt(`${where} must be an object { dtype, shape, data_offsets }, got ${jsonType(value)}`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string') throw corrupt(`${where} has no string "dtype" (got ${jsonType(dtype)})`);
  if (!Object.hasOwn(KNOWN_DTYPE_BITS, dtype)) throw corrupt(`${where} has unknown dtype ${quote(dtype, 40)}`);
  if (!Array.isArray(shape)) throw corrupt(`${where} has no array "shape" (got ${jsonType(shape)})`);
  if (!shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw corrupt(`${where} has shape ${jsonType(shape)}, not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw corrupt(`${where} has no "data_offsets" pair [begin, end] (got ${jsonType(offsets)})`);
  }
  const [begin, end] = offsets as unknown[];
  if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || (begin as number) < 0 || (end as number) < 0) {
    throw corrupt(`${where} has data_offsets ${jsonType(offsets)}, not two non-negative integers`);
  }
  if ((end as number) < (begin as number)) throw corrupt(`${where} has data_offsets [${begin}, ${end}] ending before they begin`);
  return { name, dtype, shape: shape as number[], begin: begin as number, end: end as number };
}

function readTensor(e: Entry, bytes: Uint8Array, view: DataView, dataStart: number): Tensor {
  const dtype = e.dtype as DType;
  const start = dataStart + e.begin;
  const count = (e.end - e.begin) / SUPPORTED[dtype].bytes;
  if (HOST_IS_LITTLE_ENDIAN) {
    // A fresh, aligned copy. Not bytes.slice: on a Node Buffer that returns a view, not a copy.
    const copy = new Uint8Array(e.end - e.begin);
    copy.set(bytes.subarray(start, dataStart + e.end));
    const buffer = copy.buffer;
    const data = dtype === 'F64' ? new Float64Array(buffer) : dtype === 'F32' ? new Float32Array(buffer) : new Int32Array(buffer);
    return { dtype, shape: e.shape, data };
  }
  if (dtype === 'F64') {
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat64(start + 8 * i, true);
    return { dtype, shape: e.shape, data };
  }
  if (dtype === 'F32') {
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(start + 4 * i, true);
    return { dtype, shape: e.shape, data };
  }
  const data = new Int32Array(count);
  for (let i = 0; i < count; i++) data[i] = view.getInt32(start + 4 * i, true);
  return { dtype, shape: e.shape, data };
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

function osMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Directory fsync is not possible everywhere (Windows, some file systems); those refusals are harmless. */
const UNSYNCABLE_DIR_CODES = new Set(['EISDIR', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EPERM', 'EACCES', 'EBADF']);

/**
 * Writes `bytes` to `path` so that readers see either the old file or the whole new one,
 * never a part: the bytes go to a temporary file in the same directory (`<name>.tmp-<pid>-<random>`),
 * which is flushed to disk, renamed over `path`, and the directory is then flushed too.
 * On failure the temporary file is removed and an existing file at `path` is left untouched.
 *
 * @throws MamlError `IO_ERROR` with the path and the operating system's message when the
 *   directory does not exist or any step fails; `INVALID_ARGUMENT` for a bad path or bytes.
 * @example
 * ```ts
 * writeFileAtomic('out/model.safetensors', encodeSafetensors(tensors));
 * ```
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  if (typeof path !== 'string' || path.length === 0) {
    throw new MamlError('INVALID_ARGUMENT', `writeFileAtomic: path must be a non-empty string, got ${describe(path)}`);
  }
  if (typedArrayTag(bytes) !== 'Uint8Array') {
    throw new MamlError('INVALID_ARGUMENT', `writeFileAtomic: bytes must be a Uint8Array, got ${describe(bytes)}`);
  }
  const target = resolve(path);
  const dir = dirname(target);
  try {
    if (!statSync(dir).isDirectory()) throw new MamlError('IO_ERROR', `cannot write ${path}: ${dir} is not a directory`);
  } catch (err) {
    if (err instanceof MamlError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? `directory ${dir} does not exist` : osMessage(err);
    throw new MamlError('IO_ERROR', `cannot write ${path}: ${why}`, { cause: err });
  }

  const tmp = join(dir, `${basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) {
      try { closeSync(fd); } catch { /* already failing; the first error is the one to report */ }
    }
    try { unlinkSync(tmp); } catch { /* it may never have been created */ }
    throw new MamlError('IO_ERROR', `cannot write ${path}: ${osMessage(err)}`, { cause: err });
  }

  // Make the rename itself durable.
  let dirFd: number | undefined;
  try {
    dirFd = openSync(dir, 'r');
    fsyncSync(dirFd);
  } catch (err) {
    if (!UNSYNCABLE_DIR_CODES.has((err as NodeJS.ErrnoException).code ?? '')) {
      throw new MamlError('IO_ERROR', `wrote ${path} but could not flush its directory ${dir}: ${osMessage(err)}`, { cause: err });
    }
  } finally {
    if (dirFd !== undefined) {
      try { closeSync(dirFd); } catch { /* nothing left to protect */ }
    }
  }
}

/**
 * Encodes tensors and metadata and writes them atomically to `path` (see {@link writeFileAtomic}).
 *
 * @throws MamlError `INVALID_ARGUMENT` for bad tensors or metadata (see {@link encodeSafetensors});
 *   `IO_ERROR` when the file cannot be written.
 * @example
 * ```ts
 * writeSafetensorsFile('model.safetensors', { 'layers.0.bias': { dtype: 'F32', shape: [40], data: b } }, { algorithm: 'maml' });
 * ```
 */
export function writeSafetensorsFile(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/**
 * Reads and decodes a safetensors file.
 *
 * @throws MamlError `IO_ERROR` when the file is missing or unreadable; `CORRUPT_FILE` or
 *   `UNSUPPORTED` as {@link decodeSafetensors}, with `path` named in the message.
 * @example
 * ```ts
 * const { tensors, metadata } = readSafetensorsFile('model.safetensors');
 * ```
 */
export function readSafetensorsFile(path: string): SafetensorsFile {
  if (typeof path !== 'string' || path.length === 0) {
    throw new MamlError('INVALID_ARGUMENT', `readSafetensorsFile: path must be a non-empty string, got ${describe(path)}`);
  }
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : osMessage(err);
    throw new MamlError('IO_ERROR', `cannot read ${path}: ${why}`, { cause: err });
  }
  return decodeSafetensors(bytes, path);
}
