// The CLI as a user runs it (bin/maml-native.js over the compiled lib/; `npm test` compiles
// first): a short training run with --json, usage errors, and `info`.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';
import { MetaLearner } from '../src/index.js';

const bin = resolve(__dirname, '..', 'bin', 'maml-native.js');

describe('maml-native CLI', () => {
  it('train sine --json ends with one JSON line of settings, seconds and errors, and writes the checkpoint and plot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-cli-'));
    const out = join(dir, 'nested', 'sine.safetensors');
    const plot = join(dir, 'sine.svg');
    const stdout = execFileSync(process.execPath, [bin, 'train', 'sine', '--iterations', '400', '--json', '--out', out, '--plot', plot], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = stdout.trim().split('\n');
    const result = JSON.parse(lines[lines.length - 1]!);
    expect(result.settings).toMatchObject({ iterations: 400, metaBatch: 25, shots: 10, innerLr: 0.01, innerSteps: 1, algorithm: 'maml' });
    expect(result.seconds).toBeGreaterThan(0);
    for (const k of ['before', 'after1', 'after10']) expect(Number.isFinite(result.errors[k])).toBe(true);
    // after 400 steps of MAML make adaptation help on average
    expect(result.errors.after10).toBeLessThan(result.errors.before);
    expect(MetaLearner.load(out).stepCount).toBe(400);
    const svg = readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).not.toMatch(/NaN/);
  }, 60_000);

  it('prints usage and exits with 2 on a bad command or option', () => {
    for (const args of [['train', 'moon'], ['train', 'sine', '--iterations', 'many'], ['train', 'sine', '--bogus']]) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/Usage:/);
    }
  });

  it('info reports the backends as JSON', () => {
    const info = JSON.parse(execFileSync(process.execPath, [bin, 'info'], { encoding: 'utf8' }));
    expect(info.cpu.loaded).toBe(true);
    expect(existsSync(bin)).toBe(true);
  });
});
