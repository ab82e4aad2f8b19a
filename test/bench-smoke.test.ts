// The benchmark harness at tiny sizes (`node bench/run.mjs --smoke`), so that it cannot rot:
// every case of issue 3's table gets its row, and the baselines' agreement checks run and pass.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';

const run = resolve(__dirname, '..', 'bench', 'run.mjs');
const META = ['maml', 'fomaml', 'reptile'].flatMap((a) => ['b25-s1', 'b25-s5', 'b100-s5', 'wide-b32-s5'].map((c) => `${a}/${c}`));

describe('benchmark harness (smoke run)', () => {
  it('writes RESULTS.md and results.json with every case, and the plain-js and tfjs-cpu baselines agree with the library', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-bench-smoke-'));
    try {
      const r = spawnSync(process.execPath, [run, '--smoke', '--out', dir], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
      const md = readFileSync(join(dir, 'RESULTS.md'), 'utf8');
      const ids = res.cases.map((c: { id: string }) => c.id);
      expect(ids).toEqual([...META, 'adapt', 'adapt-throughput', 'memory', 'sine-70k']);
      for (const id of ids) expect(md).toContain(`## ${id}`);
      for (const c of res.cases.filter((c: { kind: string }) => c.kind === 'meta')) {
        expect(c.checks['plain-js'], c.id).toMatchObject({ status: 'agree' });
        const impls = c.rows.map((r: { impl: string; mode: string }) => `${r.impl}:${r.mode}`);
        expect(impls).toEqual(expect.arrayContaining(['maml-native:grad', 'maml-native:step', 'plain-js:grad', 'plain-js:step']));
        for (const row of c.rows) expect(row.stats.median, `${c.id} ${row.impl}`).toBeGreaterThan(0);
        expect(c.checks['pytorch-1t'].status).toBe('not run');
      }
      for (const id of ['maml/b25-s1', 'maml/b25-s5']) {
        const c = res.cases.find((x: { id: string }) => x.id === id);
        expect(c.checks['tfjs-cpu'], id).toMatchObject({ status: 'agree' });
        expect(c.checks['tfjs-cpu'].gradRel).toBeLessThan(1e-4);
        expect(c.rows.some((r: { impl: string }) => r.impl === 'tfjs-cpu')).toBe(true);
      }
      const mem = res.cases.find((c: { id: string }) => c.id === 'memory');
      for (const row of mem.rows) expect(row.ours.peakKiB).toBeGreaterThan(0);
      const full = res.cases.find((c: { id: string }) => c.id === 'sine-70k');
      expect(full.ours.result.settings.iterations).toBe(20);
      expect(md).toMatch(/## Issue 3 targets/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses to time a baseline whose meta-gradient differs from the library\'s', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-bench-fault-'));
    try {
      const r = spawnSync(process.execPath, [run, '--smoke', '--only', 'maml/b25-s1', '--no-tfjs', '--out', dir], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, MAML_BENCH_FAULT: 'plain-js' },
      });
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
      expect(res.cases.map((c: { id: string }) => c.id)).toEqual(['maml/b25-s1']);
      const c = res.cases[0];
      expect(c.checks['plain-js'].status).toBe('mismatch');
      expect(c.checks['plain-js'].gradRel).toBeGreaterThan(1e-4);
      expect(c.rows.some((row: { impl: string }) => row.impl === 'plain-js')).toBe(false);
      expect(readFileSync(join(dir, 'RESULTS.md'), 'utf8')).toMatch(/plain JavaScript \| \*\*mismatch\*\*/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
