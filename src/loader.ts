/**
 * The one module that loads native code, and explains every failure.
 *
 * Two binaries may exist (scripts/build-native.mjs builds them at install time):
 * - the CPU addon, `maml_native.node`: build/Release (node-gyp) or a prebuild in
 *   prebuilds/<platform>-<arch>/, found by node-gyp-build; or the file named by the environment
 *   variable MAML_NATIVE_PATH, which then is the only one tried.
 * - the CUDA-enabled addon, `maml_cuda.node`: build-cuda/Release (cmake-js, where nvcc was
 *   found) or prebuilds/<platform>-<arch>/maml_cuda*.node. It is a superset of the CPU addon
 *   with the CUDA runtime linked statically, so it loads on a machine without a GPU and says
 *   why there is no device. MAML_NATIVE_NO_CUDA=1 keeps it unloaded; MAML_CUDA_PATH names
 *   the file to load instead.
 *
 * Every load attempt is recorded; `backendInfo()` reports them and never throws.
 * `resolveDevice('auto')` picks CUDA when the CUDA binary loads, has the meta-step kernels and
 * sees a device, and otherwise the CPU, saying why CUDA was not used; `resolveDevice('cuda')`
 * throws a MamlError that says why it cannot.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MamlError, describe } from './errors.js';
import type { BuildReport, CudaAddon, DeviceReport, NativeAddon } from './native-types.js';

const require = createRequire(import.meta.url);
/** The package root: src/ and lib/ are both one level down. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const platformDir = `${process.platform}-${process.arch}`;

/** One try at loading a binary: what, where, and how it went. */
export interface LoadAttempt {
  /** 'MAML_NATIVE_PATH', 'maml_native' (the CPU addon) or 'maml_cuda' (the CUDA addon). */
  binary: string;
  /** The file tried; null when none was found. */
  path: string | null;
  ok: boolean;
  error?: string;
}

/** What is loaded and usable; for `maml-native --version`, bug reports and tests. */
export interface BackendInfo {
  cpu: { loaded: boolean; path: string | null; build?: BuildReport };
  cuda: {
    /** A CUDA-enabled binary exists for this platform. */
    binaryFound: boolean;
    loaded: boolean;
    path: string | null;
    /** The loaded binary was compiled with CUDA (deviceInfo().cudaCompiled). */
    compiled: boolean;
    devices: DeviceReport['devices'];
    /** Why the CUDA backend cannot be used; absent when it can. */
    error?: string;
  };
  attempts: LoadAttempt[];
}

/** The device a learner is asked to run on. */
export type DeviceRequest = 'auto' | 'cpu' | 'cuda';

interface LoaderState {
  attempts: LoadAttempt[];
  cpu?: { addon: NativeAddon; path: string } | { error: MamlError };
  cuda?: { addon: NativeAddon; path: string; report: DeviceReport } | { found: boolean; error: string };
}

let state: LoaderState = { attempts: [] };

/** Forgets every loaded binary and attempt (the binaries stay in memory). Tests only. */
export function _resetLoaderForTests(): void {
  state = { attempts: [] };
}

/** An error's message on one line, without Node's "Require stack" (it only names this file). */
function message(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split(/\n\s*Require stack:/)[0]!.trim().replace(/\n\s*/g, ' | ');
}

/** Loads one .node file; records the attempt. The addon must look like ours. */
function tryLoad(binary: string, file: string): NativeAddon | null {
  try {
    if (!fs.existsSync(file)) throw new Error('no such file');
    const addon = require(file) as Partial<NativeAddon> | null;
    if (typeof addon?.buildInfo !== 'function' || typeof addon?.deviceInfo !== 'function') {
      throw new Error('it loaded, but it is not a maml-native addon (no buildInfo/deviceInfo exports)');
    }
    state.attempts.push({ binary, path: file, ok: true });
    return addon as NativeAddon;
  } catch (err) {
    state.attempts.push({ binary, path: file, ok: false, error: message(err) });
    return null;
  }
}

function loadFailure(): MamlError {
  const tried = state.attempts
    .filter((a) => a.binary !== 'maml_cuda')
    .map((a) => `  - ${a.binary}${a.path ? ` ${a.path}` : ''}: ${a.error ?? 'failed'}`);
  const lines = [
    `maml-native could not load its native addon (Node ${process.version}, ${platformDir}, Node-API ${process.versions.napi ?? '?'}).`,
    'Tried:',
    ...tried,
    'Possible solutions:',
    '  - run `npm rebuild maml-native` (in a clone of the repository: `npm run build:native`) and read its output',
    '  - install the build tools it needs: python3, make and a C++17 compiler (Debian/Ubuntu: `apt-get install python3 make g++`;',
    '    macOS: `xcode-select --install`; Windows: Visual Studio Build Tools), then rebuild',
    `  - check that Node.js is >= 20 (this is ${process.version}) and that node_modules was installed on this platform`,
    '  - set MAML_NATIVE_PATH to the full path of a maml_native.node built for this platform',
  ];
  return new MamlError('NATIVE_LOAD_FAILED', lines.join('\n'));
}

/**
 * The CPU addon, loaded once: the file in MAML_NATIVE_PATH if set (and nothing else), else
 * what node-gyp-build finds (build/Release, then prebuilds/<platform>-<arch>/).
 * @throws MamlError NATIVE_LOAD_FAILED, listing every attempt and the possible solutions.
 */
export function loadNative(): NativeAddon {
  if (state.cpu) {
    if ('addon' in state.cpu) return state.cpu.addon;
    throw state.cpu.error;
  }
  const explicit = process.env.MAML_NATIVE_PATH;
  let addon: NativeAddon | null = null;
  let file: string | null = null;
  if (explicit) {
    file = path.resolve(explicit);
    addon = tryLoad('MAML_NATIVE_PATH', file);
  } else {
    try {
      const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
      file = nodeGypBuild.path(root);
    } catch (err) {
      state.attempts.push({
        binary: 'maml_native',
        path: null,
        ok: false,
        error: `no build in ${path.join(root, 'build', 'Release')} nor a prebuild in ${path.join(root, 'prebuilds', platformDir)} (node-gyp-build: ${message(err)})`,
      });
    }
    // node-gyp-build takes any .node file in prebuilds/<platform>-<arch>/; it ranks the CPU
    // prebuild (tagged) above maml_cuda.node, which would also serve: it is a superset.
    if (file) addon = tryLoad('maml_native', file);
  }
  if (addon && file) {
    state.cpu = { addon, path: file };
    return addon;
  }
  state.cpu = { error: loadFailure() };
  throw state.cpu.error;
}

function cudaCandidates(): string[] {
  // MAML_CUDA_PATH names the CUDA binary to use, and then is the only one tried.
  if (process.env.MAML_CUDA_PATH) return [path.resolve(process.env.MAML_CUDA_PATH)].filter((f) => fs.existsSync(f));
  const files = [path.join(root, 'build-cuda', 'Release', 'maml_cuda.node')];
  const dir = path.join(root, 'prebuilds', platformDir);
  try {
    for (const name of fs.readdirSync(dir).sort()) {
      if (/^maml_cuda.*\.node$/.test(name)) files.push(path.join(dir, name));
    }
  } catch {
    // no prebuilds for this platform
  }
  return files.filter((f) => fs.existsSync(f));
}

function cudaDisabled(): boolean {
  const v = process.env.MAML_NATIVE_NO_CUDA;
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/**
 * The CUDA-enabled addon, loaded once, or null when there is none or it does not load (the
 * reason is recorded: see backendInfo()). Loading it does not need a GPU.
 */
export function loadCuda(): NativeAddon | null {
  if (state.cuda) return 'addon' in state.cuda ? state.cuda.addon : null;
  if (cudaDisabled()) {
    state.cuda = { found: false, error: 'disabled by MAML_NATIVE_NO_CUDA' };
    return null;
  }
  const files = cudaCandidates();
  if (files.length === 0) {
    const error =
      `no CUDA binary was built (neither build-cuda/Release/maml_cuda.node nor prebuilds/${platformDir}/maml_cuda*.node exists; ` +
      'it is built at install time where nvcc and cmake-js are found: `npm run build:cuda`)';
    state.attempts.push({ binary: 'maml_cuda', path: null, ok: false, error });
    state.cuda = { found: false, error };
    return null;
  }
  for (const file of files) {
    const addon = tryLoad('maml_cuda', file);
    if (!addon) continue;
    let report: DeviceReport;
    try {
      report = addon.deviceInfo();
    } catch (err) {
      const last = state.attempts[state.attempts.length - 1]!;
      Object.assign(last, { ok: false, error: `deviceInfo() failed: ${message(err)}` });
      continue;
    }
    state.cuda = { addon, path: file, report };
    return addon;
  }
  const failed = state.attempts.filter((a) => a.binary === 'maml_cuda' && !a.ok);
  state.cuda = {
    found: true,
    error: `the CUDA binary failed to load: ${failed.map((a) => `${a.path}: ${a.error}`).join('; ')}`,
  };
  return null;
}

interface CudaStatus {
  devicePresent: boolean;
  /** The loaded CUDA binary has the meta-step kernels (cudaLearnerCreate). */
  kernels: boolean;
  /** Why CUDA cannot be used, or which device it would use. */
  why: string;
}

function cudaStatus(): CudaStatus {
  loadCuda();
  const c = state.cuda!;
  if (!('addon' in c)) return { devicePresent: false, kernels: false, why: c.error };
  const r = c.report;
  const kernels = typeof (c.addon as Partial<CudaAddon>).cudaLearnerCreate === 'function';
  if (!r.cudaCompiled) return { devicePresent: false, kernels, why: `${c.path} was compiled without CUDA` };
  if (r.error) return { devicePresent: false, kernels, why: `no usable CUDA device: ${r.error.message} [${r.error.code}]` };
  if (r.deviceCount === 0 || r.devices.length === 0) return { devicePresent: false, kernels, why: 'no usable CUDA device: the CUDA runtime reports 0 devices' };
  const names = r.devices.map((d) => `${d.name}, compute capability ${d.computeCapability}`).join('; ');
  if (!kernels) return { devicePresent: true, kernels, why: `a CUDA device is present (${names}), but ${c.path} has no CUDA meta-step kernels (an older build: run \`npm run build:cuda\`)` };
  return { devicePresent: true, kernels, why: `CUDA device 0 of ${names}` };
}

/**
 * The CUDA binary, for the CUDA backend (src/backend-cuda.ts).
 * @throws MamlError NO_DEVICE or UNSUPPORTED, as resolveDevice('cuda').
 */
export function loadCudaKernels(): CudaAddon {
  resolveDevice('cuda');
  return (state.cuda as { addon: NativeAddon }).addon as CudaAddon;
}

/** Everything the loader knows, loading what it can. Never throws. */
export function backendInfo(): BackendInfo {
  const info: BackendInfo = {
    cpu: { loaded: false, path: null },
    cuda: { binaryFound: false, loaded: false, path: null, compiled: false, devices: [] },
    attempts: [],
  };
  try {
    const addon = loadNative();
    info.cpu.loaded = true;
    info.cpu.path = state.cpu && 'path' in state.cpu ? state.cpu.path : null;
    try {
      info.cpu.build = addon.buildInfo();
    } catch {
      // reported as loaded without build information
    }
  } catch {
    // the failure is in the attempts
  }
  try {
    const status = cudaStatus();
    const c = state.cuda!;
    if ('addon' in c) {
      Object.assign(info.cuda, { binaryFound: true, loaded: true, path: c.path, compiled: c.report.cudaCompiled, devices: c.report.devices ?? [] });
    } else {
      info.cuda.binaryFound = c.found;
    }
    if (!(status.devicePresent && status.kernels)) info.cuda.error = status.why;
  } catch (err) {
    info.cuda.error = `the CUDA backend could not be inspected: ${message(err)}`;
  }
  info.attempts = state.attempts.map((a) => ({ ...a }));
  return info;
}

/**
 * Picks the device for a request: 'cpu' gives the CPU; 'cuda' gives CUDA or throws; 'auto'
 * gives CUDA when it is usable, else the CPU with the reason.
 * @throws MamlError INVALID_ARGUMENT for an unknown request; NO_DEVICE for 'cuda' without a
 * usable CUDA device; UNSUPPORTED for 'cuda' with a device but a CUDA binary without kernels.
 * @example resolveDevice('auto') // { device: 'cpu', reason: 'CUDA not used: no CUDA binary was built (...)' }
 */
export function resolveDevice(request: DeviceRequest): { device: 'cpu' | 'cuda'; reason: string } {
  if (request !== 'auto' && request !== 'cpu' && request !== 'cuda') {
    throw new MamlError('INVALID_ARGUMENT', `device must be 'auto', 'cpu' or 'cuda'; got ${describe(request)}`);
  }
  if (request === 'cpu') return { device: 'cpu', reason: "device 'cpu' was requested" };
  const status = cudaStatus();
  if (status.devicePresent && status.kernels) return { device: 'cuda', reason: `device '${request}': ${status.why}` };
  if (request === 'auto') return { device: 'cpu', reason: `CUDA not used: ${status.why}` };
  if (!status.devicePresent) throw new MamlError('NO_DEVICE', `device 'cuda' was requested, but ${status.why}`);
  throw new MamlError('UNSUPPORTED', `device 'cuda' was requested, but ${status.why}. Use device: 'cpu' or 'auto'.`);
}
