// The glyph commands as a user runs them (bin/maml-native.js over the compiled lib/), on a
// small dataset so that each run takes seconds: train, eval of the checkpoint, the comparison
// table, usage errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';

const bin = resolve(__dirname, '..', 'bin', 'maml-native.js');
const small = ['--train-chars', '12', '--val-chars', '0', '--test-chars', '8', '--samples', '8', '--quiet'];
const run = (args: string[]) => execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!);

describe('maml-native train / eval glyphs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maml-glyphs-'));

  it.each(['maml', 'protonet'])('train glyphs --algorithm %s writes a checkpoint with its settings and reports test accuracy with a confidence interval; eval glyphs reads it back', (algorithm) => {
    const out = join(dir, `${algorithm}.safetensors`);
    const stdout = run(['train', 'glyphs', '--algorithm', algorithm, '--ways', '5', '--shots', '1', '--iterations', '40', '--meta-batch', '4', '--episodes', '40', '--out', out, '--json', ...small]);
    const r = lastJson(stdout);
    expect(r.settings).toMatchObject({ algorithm, ways: 5, shots: 1, iterations: 40, metaBatch: 4 });
    expect(r.trainSeconds).toBeGreaterThan(0);
    expect(r.test.episodes).toBe(40);
    expect(r.test.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.test.accuracy).toBeLessThanOrEqual(1);
    expect(r.test.ci95).toBeGreaterThan(0);
    expect(stdout).toMatch(new RegExp(`${algorithm} 5-way 1-shot on held-out characters: \\d+\\.\\d% ± \\d+\\.\\d`));
    const side = JSON.parse(readFileSync(out.replace('.safetensors', '.glyphs.json'), 'utf8'));
    expect(side).toMatchObject({ algorithm, ways: 5, shots: 1, dataset: { trainCharacters: 12, testCharacters: 8, samples: 8 } });
    // the same test episodes (default seed) give the same accuracy from the checkpoint
    const ev = lastJson(run(['eval', 'glyphs', '--checkpoint', out, '--episodes', '40', '--json']));
    expect(ev.accuracy).toBeCloseTo(r.test.accuracy, 6);
    if (algorithm === 'protonet') {
      // metric learners classify any number of ways
      const ev20 = lastJson(run(['eval', 'glyphs', '--checkpoint', out, '--ways', '10', '--episodes', '10', '--json']));
      expect(ev20.ways).toBe(10);
    } else {
      const r10 = spawnSync(process.execPath, [bin, 'eval', 'glyphs', '--checkpoint', out, '--ways', '10'], { encoding: 'utf8' });
      expect(r10.status).toBe(1);
      expect(r10.stderr).toMatch(/5-way head/);
    }
  }, 120_000);

  it('eval glyphs --baselines writes the markdown table and its JSON', () => {
    const table = join(dir, 'compare.md');
    const stdout = run(['eval', 'glyphs', '--baselines', '--settings', '5x1,5x5', '--episodes', '30', '--pretrain-iterations', '30', '--dir', join(dir, 'runs'), '--table', table, ...small]);
    const md = readFileSync(table, 'utf8');
    expect(md).toMatch(/\| method \| 5-way 1-shot \| 5-way 5-shot \|/);
    expect(md).toMatch(/\| nearest neighbour \(raw pixels\) \| \d+\.\d ± \d+\.\d \| \d+\.\d ± \d+\.\d \|/);
    expect(md).toMatch(/\| pre-trained \+ fine-tuned head \|/);
    expect(stdout).toContain('nearest neighbour');
    const json = JSON.parse(readFileSync(join(dir, 'compare.json'), 'utf8'));
    expect(json.rows.length).toBe(4);
    expect(existsSync(join(dir, 'runs', 'pretrained.safetensors'))).toBe(true);
  }, 120_000);

  it('eval glyphs --compare trains a missing learner into --dir, then reuses it', () => {
    const table = join(dir, 'learners.md');
    const args = ['eval', 'glyphs', '--compare', '--no-baselines', '--algorithms', 'maml', '--settings', '5x1', '--iterations', '5', '--episodes', '20', '--dir', join(dir, 'runs2'), '--table', table, ...small];
    run(args);
    expect(existsSync(join(dir, 'runs2', 'maml-5way-1shot.safetensors'))).toBe(true);
    const first = JSON.parse(readFileSync(join(dir, 'learners.json'), 'utf8')).rows;
    expect(first.map((r: { method: string }) => r.method)).toEqual(['maml']);
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    expect(r.stderr).toMatch(/using .*maml-5way-1shot\.safetensors/);
    const again = JSON.parse(readFileSync(join(dir, 'learners.json'), 'utf8')).rows;
    expect(again[0].accuracy).toBe(first[0].accuracy); // same checkpoint, same test episodes
  }, 120_000);

  it('prints usage and exits with 2 on bad options', () => {
    for (const args of [
      ['train', 'glyphs', '--algorithm', 'knn'],
      ['train', 'glyphs', '--ways', '1'],
      ['eval', 'glyphs'],
      ['eval', 'glyphs', '--compare', '--settings', '5-1'],
      ['eval', 'glyphs', '--compare', '--checkpoint', 'x.safetensors'],
    ]) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/Usage:/);
    }
  });
});
