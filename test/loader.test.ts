// The loader: the CPU addon loads, every failure is explained, and device requests resolve to
// CUDA where a device is usable, else to the CPU with a reason. Run:
// `npx vitest run test/loader.test.ts`. The CUDA tests need build-cuda/Release/maml_cuda.node
// (`npm run build:cuda`, where nvcc is installed) and skip without it.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, it, expect } from 'vitest';

import { MamlError } from '../src/errors.js';
import { _resetLoaderForTests, backendInfo, loadCuda, loadNative, resolveDevice } from '../src/loader.js';
import type { NativeAddon } from '../src/native-types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cudaBinary = path.join(root, 'build-cuda', 'Release', 'maml_cuda.node');
const cudaBuilt = fs.existsSync(cudaBinary);
// A usable GPU changes the expected answers: 'auto' and 'cuda' give CUDA.
const devicePresent = (() => {
  if (!cudaBuilt) return false;
  try {
    const r = (createRequire(import.meta.url)(cudaBinary) as NativeAddon).deviceInfo();
    return !r.error && r.deviceCount > 0;
  } catch {
    return false;
  }
})();

// Skipped tests say why in their names.
const skippedNoBinary = cudaBuilt ? '' : ' (skipped: build-cuda/Release/maml_cuda.node was not built, no nvcc at install time)';
const skippedDevice = devicePresent ? ' (skipped: a usable CUDA device is present)' : '';
const skippedNoDevice = devicePresent ? '' : ' (skipped: no usable CUDA device here)';

const ENV_KEYS = ['MAML_NATIVE_PATH', 'MAML_NATIVE_NO_CUDA', 'MAML_CUDA_PATH'] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

beforeEach(() => {
  for (const k of ENV_KEYS) delete process.env[k];
  _resetLoaderForTests();
});
afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  _resetLoaderForTests();
});

describe('loadNative', () => {
  it('loads the CPU addon once and it reports its build', () => {
    const addon = loadNative();
    expect(loadNative()).toBe(addon);
    const build = addon.buildInfo();
    expect(build.precision).toEqual(expect.arrayContaining(['float32', 'float64']));
    expect(build.compiler).toMatch(/\S/);
    expect(build.threads).toBeGreaterThanOrEqual(1);
    expect(addon.deviceInfo().cudaCompiled).toBe(build.cuda);
  });

  it('a MAML_NATIVE_PATH that does not exist fails with NATIVE_LOAD_FAILED, the attempt and the solutions', () => {
    const bad = path.join(os.tmpdir(), 'maml-native-missing', 'nope.node');
    process.env.MAML_NATIVE_PATH = bad;
    const err = thrown(() => loadNative());
    expect(err).toBeInstanceOf(MamlError);
    expect((err as MamlError).code).toBe('NATIVE_LOAD_FAILED');
    expect((err as MamlError).message).toContain(`MAML_NATIVE_PATH ${bad}`);
    expect((err as MamlError).message).toContain('Possible solutions:');
    expect((err as MamlError).message).toContain('npm rebuild maml-native');
    // The failure is remembered: the same error again, and no second attempt.
    expect(thrown(() => loadNative())).toBe(err);
    const attempts = backendInfo().attempts.filter((a) => a.binary === 'MAML_NATIVE_PATH');
    expect(attempts).toEqual([{ binary: 'MAML_NATIVE_PATH', path: bad, ok: false, error: expect.stringMatching(/\S/) }]);
  });

  it('a MAML_NATIVE_PATH to a file that is not an addon fails with NATIVE_LOAD_FAILED', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'maml-native-test-'));
    const fake = path.join(dir, 'fake.node');
    fs.writeFileSync(fake, 'not an ELF file');
    process.env.MAML_NATIVE_PATH = fake;
    const err = thrown(() => loadNative()) as MamlError;
    expect(err.code).toBe('NATIVE_LOAD_FAILED');
    expect(err.message).toContain(fake);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a MAML_NATIVE_PATH to the real addon is loaded instead of searching', () => {
    const real = backendInfo().cpu.path;
    expect(real).toMatch(/\.node$/);
    _resetLoaderForTests();
    process.env.MAML_NATIVE_PATH = real!;
    loadNative();
    const attempts = backendInfo().attempts.filter((a) => a.binary !== 'maml_cuda');
    expect(attempts).toEqual([{ binary: 'MAML_NATIVE_PATH', path: real, ok: true }]);
  });
});

describe('backendInfo', () => {
  it('never throws, even when the CPU addon cannot be loaded', () => {
    process.env.MAML_NATIVE_PATH = path.join(os.tmpdir(), 'maml-native-missing', 'nope.node');
    const info = backendInfo();
    expect(info.cpu).toEqual({ loaded: false, path: null });
    expect(info.attempts.some((a) => a.binary === 'MAML_NATIVE_PATH' && !a.ok)).toBe(true);
  });

  // Skipped where a GPU is usable: there the CUDA backend has no error to report.
  it.skipIf(devicePresent)(`reports the CPU addon loaded and CUDA not usable on this machine, with the reason${skippedDevice}`, () => {
    const info = backendInfo();
    expect(info.cpu.loaded).toBe(true);
    expect(info.cpu.build?.precision).toContain('float64');
    expect(info.cuda.devices).toEqual([]);
    expect(info.cuda.error).toMatch(/\S/);
    if (cudaBuilt) expect(info.cuda.binaryFound).toBe(true);
    expect(info.attempts.some((a) => a.binary === 'maml_native' && a.ok)).toBe(true);
  });

  it('says CUDA is disabled when MAML_NATIVE_NO_CUDA is set', () => {
    process.env.MAML_NATIVE_NO_CUDA = '1';
    expect(loadCuda()).toBeNull();
    expect(backendInfo().cuda.error).toContain('MAML_NATIVE_NO_CUDA');
  });
});

describe('resolveDevice', () => {
  it("'cpu' gives the CPU", () => {
    expect(resolveDevice('cpu').device).toBe('cpu');
  });

  it.skipIf(devicePresent)(`'auto' falls back to the CPU and says why CUDA was not used${skippedDevice}`, () => {
    const r = resolveDevice('auto');
    expect(r.device).toBe('cpu');
    expect(r.reason).toMatch(/^CUDA not used: \S/);
  });

  // Skipped where a GPU is usable: there 'cuda' gives CUDA (the next test).
  it.skipIf(devicePresent)(`'cuda' throws NO_DEVICE where no CUDA device is usable${skippedDevice}`, () => {
    const err = thrown(() => resolveDevice('cuda'));
    expect(err).toBeInstanceOf(MamlError);
    expect((err as MamlError).code).toBe('NO_DEVICE');
    expect((err as MamlError).message).toMatch(/^device 'cuda' was requested, but \S/);
  });

  // Runs only where a GPU is usable.
  it.skipIf(!devicePresent)(`'cuda' and 'auto' give CUDA where a device is present${skippedNoDevice}`, () => {
    expect(resolveDevice('cuda')).toMatchObject({ device: 'cuda' });
    expect(resolveDevice('auto').device).toBe('cuda');
    expect(resolveDevice('auto').reason).toMatch(/CUDA device 0 of \S/);
    expect(backendInfo().cuda.error).toBeUndefined();
  });

  it('an unknown request throws INVALID_ARGUMENT', () => {
    const err = thrown(() => resolveDevice('gpu' as 'cuda')) as MamlError;
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain("the string \"gpu\"");
  });
});

// These need the CUDA-enabled binary; without it (no nvcc at install time) they skip.
describe.skipIf(!cudaBuilt)(`the CUDA-enabled binary (build-cuda/Release/maml_cuda.node)${skippedNoBinary}`, () => {
  it('loads without a GPU and reports that it was compiled with CUDA', () => {
    const addon = loadCuda();
    expect(addon).not.toBeNull();
    const report = addon!.deviceInfo();
    expect(report.cudaCompiled).toBe(true);
    expect(report.runtimeVersion).toBeGreaterThanOrEqual(12000);
    const info = backendInfo();
    expect(info.cuda).toMatchObject({ binaryFound: true, loaded: true, path: cudaBinary, compiled: true });
  });

  // Skipped where a GPU is usable: there is no error code to check.
  it.skipIf(devicePresent)(`reports NO_DEVICE with a message on a machine without a usable GPU${skippedDevice}`, () => {
    const report = loadCuda()!.deviceInfo();
    expect(report.deviceCount).toBe(0);
    expect(report.error?.code).toBe('NO_DEVICE');
    expect(report.error?.message).toMatch(/\S/);
    expect(resolveDevice('auto').reason).toContain('[NO_DEVICE]');
  });
});
