// The education commands as a user runs them (bin/maml-native.js over the compiled lib/; `npm
// test` compiles first): train students on the simulator and on a CSV, eval students on the
// checkpoint, usage errors and a bad CSV.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';
import { simulateStudents, writeAssistmentsCsv } from '../src/index.js';

const bin = resolve(__dirname, '..', 'bin', 'maml-native.js');
const run = (args: string[]) => execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const lastJson = (stdout: string) => {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
};

describe('maml-native train/eval students', () => {
  it('trains on simulated students, prints the table, writes checkpoint and plot; eval reproduces the table', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-cli-'));
    const out = join(dir, 'm', 'students.safetensors');
    const plot = join(dir, 'students.svg');
    const stdout = run(['train', 'students', '--students', '1500', '--iterations', '200', '--json', '--quiet', '--out', out, '--plot', plot]);
    expect(stdout).toMatch(/\| K \| method \| students \| AUC \[95% CI\]/);
    expect(stdout).toMatch(/\(e\) Bayes-optimal/);
    expect(stdout).toMatch(/quality bar/);
    const result = lastJson(stdout);
    expect(result.source).toEqual({ kind: 'simulator', config: { seed: 1, students: 1500 } });
    expect(result.evaluation.rows.map((r: { k: number }) => r.k)).toEqual(expect.arrayContaining([0, 1, 3, 5, 10, 20]));
    expect(existsSync(out)).toBe(true);
    expect(existsSync(join(dir, 'm', 'students.education.json'))).toBe(true);
    const svg = readFileSync(plot, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toMatch(/AUC against K/);
    expect(svg).not.toMatch(/NaN/);

    const evalOut = run(['eval', 'students', '--checkpoint', out, '--json', '--quiet']);
    const again = lastJson(evalOut);
    expect(again.evaluation.rows).toEqual(result.evaluation.rows);
    expect(existsSync(join(dir, 'm', 'students.eval.svg'))).toBe(true);
  }, 90_000);

  it('trains from an ASSISTments-style CSV (no simulator truth: baselines a-d only)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-cli-'));
    const csv = join(dir, 'log.csv');
    writeAssistmentsCsv(csv, simulateStudents({ students: 1200, seed: 8 }).log);
    const stdout = run(['train', 'students', '--csv', csv, '--iterations', '100', '--json', '--quiet', '--out', join(dir, 's.safetensors'), '--plot', join(dir, 's.svg')]);
    const result = lastJson(stdout);
    expect(result.loadStats.interactions).toBeGreaterThan(30_000);
    const methods = new Set(result.evaluation.rows.map((r: { method: string }) => r.method));
    expect([...methods].sort()).toEqual(['global', 'irt', 'meta', 'scratch']);
    expect(stdout).not.toMatch(/Bayes-optimal/);
  }, 90_000);

  it('exits with 2 and the usage on a bad command line', () => {
    for (const args of [
      ['train', 'students', '--bogus'],
      ['train', 'students', '--iterations', 'lots'],
      ['train', 'students', '--csv', 'x.csv', '--students', '10'],
      ['train', 'students', '--algorithm', 'magic'],
      ['eval', 'students'],
    ]) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/Usage:/);
      expect(r.stderr).toMatch(/train students/);
    }
  });

  it('a malformed CSV exits with 1 and names the file, the line and the error code', () => {
    const r = spawnSync(process.execPath, [bin, 'train', 'students', '--csv', resolve(__dirname, 'fixtures', 'bad-correct.csv'), '--quiet'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error CORRUPT_FILE: .*bad-correct\.csv:4: correct must be 0 or 1, got "yes"/);
  });
});
