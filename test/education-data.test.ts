// Education data: the simulator's statistics match its model, the ASSISTments loader handles
// each quirk of the 2009 export (fixtures in test/fixtures), bad files give CsvFormatError with
// the line, and the simulator's CSV loads back to the same answers.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';
import { simulateStudents, loadAssistmentsCsv, writeAssistmentsCsv, CsvFormatError, MamlError, studentHistories } from '../src/index.js';

const fixture = (name: string) => resolve(__dirname, 'fixtures', name);

describe('student simulator', () => {
  it('is seeded, and its answers follow its own true probabilities', () => {
    const a = simulateStudents({ students: 3000, seed: 5 });
    const b = simulateStudents({ students: 3000, seed: 5 });
    expect(b.log.correct).toEqual(a.log.correct);
    expect(simulateStudents({ students: 3000, seed: 6 }).log.correct).not.toEqual(a.log.correct);
    const { log, truth } = a;
    const n = log.correct.length;
    // calibration by decile of the true probability: observed rate within 4 standard errors
    const bins = Array.from({ length: 10 }, () => ({ p: 0, y: 0, n: 0 }));
    for (let i = 0; i < n; i++) {
      const bin = bins[Math.min(9, Math.floor(truth.probability[i]! * 10))]!;
      bin.p += truth.probability[i]!;
      bin.y += log.correct[i]!;
      bin.n++;
    }
    for (const bin of bins.filter((x) => x.n > 500)) {
      const p = bin.p / bin.n;
      expect(Math.abs(bin.y / bin.n - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / bin.n) + 1e-3);
    }
    // every probability is σ(a·(q·θ) − b) of the stated parameters (no learning by default)
    const D = truth.config.skills;
    for (let i = 0; i < n; i += 97) {
      const u = log.student[i]!, j = log.item[i]!;
      let z = 0;
      for (let k = 0; k < D; k++) z += truth.loadings[j * D + k]! * truth.ability[u * D + k]!;
      expect(truth.probability[i]).toBeCloseTo(1 / (1 + Math.exp(-(truth.discrimination[j]! * z - truth.difficulty[j]!))), 6);
    }
  });

  it('draws abilities with the configured spread and correlation, and skill-builder blocks', () => {
    const { log, truth } = simulateStudents({ students: 6000, seed: 2, abilitySd: 1.5, abilityCorrelation: 0.3 });
    const D = truth.config.skills, U = 6000;
    let s00 = 0, s01 = 0;
    for (let u = 0; u < U; u++) {
      s00 += truth.ability[u * D]! ** 2;
      s01 += truth.ability[u * D]! * truth.ability[u * D + 1]!;
    }
    expect(Math.sqrt(s00 / U)).toBeCloseTo(1.5, 1);
    expect(s01 / s00).toBeGreaterThan(0.25);
    expect(s01 / s00).toBeLessThan(0.35);
    // log-discriminations ~ N(0, 0.3²), difficulties ~ N(0, 1), about 20% two-skill items
    const J = truth.discrimination.length;
    const logA = Array.from(truth.discrimination, Math.log);
    const sd = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    expect(sd(logA)).toBeGreaterThan(0.24);
    expect(sd(logA)).toBeLessThan(0.36);
    expect(sd(Array.from(truth.difficulty))).toBeGreaterThan(0.85);
    expect(sd(Array.from(truth.difficulty))).toBeLessThan(1.15);
    let two = 0;
    for (let j = 0; j < J; j++) if (log.skillOffsets.length && truth.loadings.subarray(j * D, (j + 1) * D).filter((x) => x !== 0).length === 2) two++;
    expect(two / J).toBeGreaterThan(0.1);
    expect(two / J).toBeLessThan(0.3);
    // each student answers 3-5 blocks of 5-15 answers, all on one skill per block
    const h = studentHistories(log);
    for (const { rows } of h.slice(0, 200)) {
      expect(rows.length).toBeGreaterThanOrEqual(15);
      expect(rows.length).toBeLessThanOrEqual(75);
    }
  });

  it('learning raises the probability of later answers on a practised skill', () => {
    const base = simulateStudents({ students: 2000, seed: 3 });
    const learn = simulateStudents({ students: 2000, seed: 3, learningRate: 0.1 });
    const mean = (p: Float32Array) => p.reduce((s, v) => s + v, 0) / p.length;
    expect(mean(learn.truth.probability)).toBeGreaterThan(mean(base.truth.probability) + 0.05);
    expect(learn.truth.probability[0]).toBe(base.truth.probability[0]); // the first answer has no practice yet
  });

  it('simulates a million answers in a few seconds', () => {
    const t = performance.now();
    const { log } = simulateStudents({ students: 25_000, seed: 4 });
    const s = (performance.now() - t) / 1000;
    console.log(`simulated ${log.correct.length} answers in ${s.toFixed(2)} s`);
    expect(log.correct.length).toBeGreaterThan(900_000);
    expect(s).toBeLessThan(10);
  }, 30_000);

  it('rejects unknown and out-of-range settings', () => {
    expect(() => simulateStudents({ students: 0 })).toThrow(MamlError);
    expect(() => simulateStudents({ abilityCorrelation: 1.5 })).toThrow(/abilityCorrelation/);
    expect(() => simulateStudents({ blockLengthMax: 99 } as never)).toThrow(/blockLengthMax/);
    expect(() => simulateStudents({ bogus: 1 } as never)).toThrow(/unknown option config.bogus/);
  });
});

describe('ASSISTments CSV loader', () => {
  it('reads the 2009 quirks: latin1, multi-skill rows, empty skills, scaffolding, order_id, collapsed ids', async () => {
    const log = await loadAssistmentsCsv(fixture('assistments-quirks.csv'));
    expect(log.stats).toMatchObject({ rows: 10, interactions: 8, scaffoldingDropped: 1, multiSkillRows: 1, emptySkill: 1, conflicts: 0 });
    expect(log.studentIds).toEqual(['64525', '70363']);
    expect(log.skillIds).toEqual(['1', '10', '47', '280', '290']);
    const histories = studentHistories(log);
    const view = (s: number) =>
      Array.from(histories[s]!.rows, (i) => ({
        problem: log.itemIds[log.item[i]!],
        correct: log.correct[i],
        skills: Array.from(log.skills.subarray(log.skillOffsets[i]!, log.skillOffsets[i + 1]!), (k) => log.skillIds[k]),
        line: log.lines[i],
      }));
    // chronological by order_id, whatever the file order
    expect(view(0)).toEqual([
      { problem: '51424', correct: 1, skills: ['1'], line: 2 },
      { problem: '51500', correct: 0, skills: ['47'], line: 10 },
      { problem: '51435', correct: 1, skills: ['1'], line: 3 },
      { problem: '51501', correct: 1, skills: ['280', '290'], line: 11 },
    ]);
    expect(view(1)).toEqual([
      { problem: '51400', correct: 1, skills: [], line: 9 },
      { problem: '51444', correct: 0, skills: ['1', '10'], line: 4 }, // two rows, one answer
      { problem: '51395', correct: 1, skills: ['1'], line: 5 },
      { problem: '51481', correct: 0, skills: ['1'], line: 6 },
    ]);
  });

  it('keeps scaffolding rows when asked, and reads UTF-8 with a byte-order mark', async () => {
    const kept = await loadAssistmentsCsv(fixture('assistments-quirks.csv'), { keepScaffolding: true });
    expect(kept.stats.interactions).toBe(9);
    expect(kept.itemIds).toContain('51482');
    const utf8 = await loadAssistmentsCsv(fixture('assistments-utf8-bom.csv'), { encoding: 'utf8' });
    const latin = await loadAssistmentsCsv(fixture('assistments-quirks.csv'));
    expect(utf8.studentIds).toEqual(latin.studentIds); // the BOM does not hide the first column
    expect(Array.from(utf8.correct)).toEqual(Array.from(latin.correct));
    // latin1 (the default) also reads a UTF-8 file: the ids are ASCII
    expect((await loadAssistmentsCsv(fixture('assistments-utf8-bom.csv'))).itemIds).toEqual(latin.itemIds);
  });

  it.each([
    ['bad-correct.csv', 4, 'correct', /correct must be 0 or 1, got "yes"/],
    ['bad-fields.csv', 3, undefined, /expected 6 fields as in the header, got 4/],
    ['missing-column.csv', 1, 'correct', /the header has no column 'correct'/],
    ['bad-order.csv', 4, 'order_id', /order_id must be a number, got "x9"/],
    ['empty-user.csv', 3, 'user_id', /user_id is empty/],
    ['unclosed-quote.csv', 3, undefined, /never closed/],
    ['order-clash.csv', 3, 'order_id', /already used by line 2/],
    ['empty.csv', 1, undefined, /empty/],
  ])('%s gives a CsvFormatError (CORRUPT_FILE) at line %i', async (name, line, column, message) => {
    const err = await loadAssistmentsCsv(fixture(name)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CsvFormatError);
    expect(err).toBeInstanceOf(MamlError);
    const e = err as CsvFormatError;
    expect(e.code).toBe('CORRUPT_FILE');
    expect(e.line).toBe(line);
    expect(e.column).toBe(column);
    expect(e.message).toMatch(message);
    expect(e.message.startsWith(`${fixture(name)}:${line}: `)).toBe(true);
  });

  it('a missing file is IO_ERROR and a bad argument INVALID_ARGUMENT', async () => {
    await expect(loadAssistmentsCsv(fixture('no-such-file.csv'))).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(loadAssistmentsCsv('' as string)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(loadAssistmentsCsv(fixture('bad-correct.csv'), { encoding: 'ebcdic' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('loads what the simulator writes back to the same answers, 300,000 rows in seconds', async () => {
    const { log } = simulateStudents({ students: 6500, seed: 9 });
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-csv-'));
    const file = join(dir, 'sim.csv');
    writeAssistmentsCsv(file, log);
    const t = performance.now();
    const back = await loadAssistmentsCsv(file);
    const s = (performance.now() - t) / 1000;
    console.log(`loaded ${back.stats.rows} rows (${back.stats.interactions} answers) in ${s.toFixed(2)} s`);
    expect(back.stats.rows).toBeGreaterThan(300_000);
    expect(back.stats.interactions).toBe(log.correct.length);
    expect(back.stats.multiSkillRows).toBe(back.stats.rows - log.correct.length);
    expect(Array.from(back.correct)).toEqual(Array.from(log.correct));
    expect(back.studentIds).toEqual(log.studentIds);
    expect(Array.from(back.item, (j) => back.itemIds[j])).toEqual(Array.from(log.item, (j) => log.itemIds[j]));
    for (let i = 0; i < log.correct.length; i += 101) {
      const skills = (l: typeof log, r: number) => Array.from(l.skills.subarray(l.skillOffsets[r]!, l.skillOffsets[r + 1]!), (k) => l.skillIds[k]).sort();
      expect(skills(back, i)).toEqual(skills(log, i));
    }
    expect(s).toBeLessThan(15);
  }, 60_000);

  it('reads a file without order_id in file order, and ignores blank lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-csv-'));
    const file = join(dir, 'plain.csv');
    writeFileSync(file, 'User_ID , correct,problem_id\n7,1,a\n\n7,0,b\n8,1,a\n');
    const log = await loadAssistmentsCsv(file);
    expect(log.studentIds).toEqual(['7', '8']);
    expect(Array.from(log.correct)).toEqual([1, 0, 1]);
    expect(log.stats.emptySkill).toBe(3);
  });
});
