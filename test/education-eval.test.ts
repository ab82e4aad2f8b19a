// Education evaluation: metrics against hand-computed values and a brute-force reference, the
// bootstrap, the split (no test student reaches training or the encoder), students as ragged
// tasks, the IRT baseline and the Bayes-optimal predictor against numerical integration, and a
// small end-to-end run in which adaptation beats the global model.
import { describe, it, expect } from 'vitest';
import {
  auc,
  accuracy,
  logLoss,
  bootstrapMetrics,
  simulateStudents,
  splitStudents,
  studentHistories,
  StudentEncoder,
  encodeStudents,
  cutStudents,
  fitIrt2pl,
  mapAbility,
  bayesPredictor,
  loadStudentData,
  trainStudents,
  evaluateStudents,
  STUDENT_DEFAULTS,
  Rng,
  type StudentData,
} from '../src/index.js';
import { splitData } from '../src/education/experiment.js';

describe('metrics', () => {
  it('AUC counts ties as one half, with and without weights', () => {
    const s = [0.1, 0.4, 0.35, 0.8, 0.4], y = [0, 0, 1, 1, 1];
    // pairs (positive, negative): 0.35>0.1, 0.35<0.4, 0.8>both, 0.4>0.1, 0.4=0.4 -> 4.5 of 6
    expect(auc(s, y)).toBeCloseTo(4.5 / 6, 12);
    // weight 2 on the first negative: 0.35: 2, 0.8: 3, 0.4: 2.5 of 9
    expect(auc(s, y, [2, 1, 1, 1, 1])).toBeCloseTo(7.5 / 9, 12);
    expect(auc([0.5, 0.5, 0.5], [0, 1, 1])).toBe(0.5);
    expect(auc([0.2, 0.3], [1, 1])).toBeNaN();
    expect(auc([0.9, 0.1], [0, 1])).toBe(0);
  });

  it('AUC matches the O(n²) pair count on random scores with many ties', () => {
    const rng = new Rng(3);
    const n = 400;
    const s = Array.from({ length: n }, () => Math.round(rng.uniform() * 20) / 20);
    const y = s.map((v) => (rng.uniform() < v ? 1 : 0));
    let num = 0, pairs = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (y[i] === 1 && y[j] === 0) { pairs++; num += s[i]! > s[j]! ? 1 : s[i] === s[j] ? 0.5 : 0; }
    expect(Math.abs(auc(s, y) - num / pairs)).toBeLessThan(1e-12);
  });

  it('accuracy thresholds at 0.5 and log-loss is the mean negative log-likelihood, clipped', () => {
    const p = [0.2, 0.7, 0.5, 0.9], y = [0, 0, 1, 1];
    expect(accuracy(p, y)).toBe(0.5); // right, wrong, wrong (0.5 predicts wrong), right
    expect(logLoss(p, y)).toBeCloseTo(-(Math.log(0.8) + Math.log(0.3) + Math.log(0.5) + Math.log(0.9)) / 4, 12);
    expect(logLoss([0, 1], [1, 0])).toBeCloseTo(-Math.log(1e-7), 6);
    expect(accuracy(p, y, [3, 1, 1, 3])).toBe(0.75);
  });

  it('the bootstrap brackets the estimate, and a method compared with itself differs by exactly 0', () => {
    const rng = new Rng(5);
    const students = 200, per = 10;
    const y = new Float64Array(students * per), p = new Float64Array(students * per), q = new Float64Array(students * per);
    const student = new Int32Array(students * per);
    for (let i = 0; i < y.length; i++) {
      student[i] = Math.floor(i / per);
      p[i] = rng.uniform();
      y[i] = rng.uniform() < p[i]! ? 1 : 0;
      q[i] = 0.5 + 0.1 * (p[i]! - 0.5) + 0.3 * (rng.uniform() - 0.5);
    }
    const r = bootstrapMetrics({ good: p, poor: q, same: p }, y, student, students, { resamples: 300, seed: 1, pairs: [['good', 'poor'], ['good', 'same']] });
    for (const m of ['good', 'poor'] as const)
      for (const k of ['auc', 'accuracy', 'logLoss'] as const) {
        const e = r.methods[m]![k];
        expect(e.lo).toBeLessThanOrEqual(e.value);
        expect(e.hi).toBeGreaterThanOrEqual(e.value);
        expect(e.hi - e.lo).toBeGreaterThan(0);
      }
    expect(r.methods.good!.auc.value).toBeCloseTo(auc(p, y), 12);
    expect(r.differences['good - poor']!.auc.lo).toBeGreaterThan(0);
    expect(r.differences['good - same']!.auc).toEqual({ value: 0, lo: 0, hi: 0 });
  });
});

describe('split, encoder and tasks', () => {
  it('assigns each student by its id alone, in the stated proportions', () => {
    const ids = Array.from({ length: 20000 }, (_, i) => `user${i}`);
    const g = splitStudents(ids, { seed: 4, train: 0.6, validation: 0.1 });
    const share = (k: number) => g.filter((x) => x === k).length / ids.length;
    expect(share(0)).toBeCloseTo(0.6, 1);
    expect(share(1)).toBeCloseTo(0.1, 1);
    expect(share(2)).toBeCloseTo(0.3, 1);
    const subset = splitStudents(ids.slice(5000, 6000).reverse(), { seed: 4, train: 0.6, validation: 0.1 });
    expect(Array.from(subset)).toEqual(Array.from(g.subarray(5000, 6000)).reverse());
    expect(splitStudents(ids, { seed: 5 })).not.toEqual(g);
    expect(() => splitStudents(ids, { train: 0.9, validation: 0.2 })).toThrow(/fractions/);
  });

  it('nothing about validation or test students reaches the encoder or the trained models', () => {
    const base = simulateStudents({ students: 900, seed: 11 });
    const split = { seed: 3, train: 0.6, validation: 0.1 };
    const groups = splitStudents(base.log.studentIds, split);
    // a copy in which every test student's answers are flipped and moved to other items
    const log2 = { ...base.log, correct: base.log.correct.slice(), item: base.log.item.slice() };
    let changed = 0;
    for (let i = 0; i < log2.correct.length; i++)
      if (groups[log2.student[i]!] === 2) {
        log2.correct[i] = 1 - log2.correct[i]!;
        log2.item[i] = (log2.item[i]! + 7) % log2.itemIds.length;
        changed++;
      }
    expect(changed).toBeGreaterThan(1000);
    const opts = { ...STUDENT_DEFAULTS, split, iterations: 40, metaBatch: 32, globalIterations: 20, ks: [0, 3], stepsGrid: [1, 3], rateScaleGrid: [1], scratchLrGrid: [0.3], scratchStepsGrid: [3], progress: false };
    const a = trainStudents({ source: { kind: 'simulator' }, log: base.log }, opts);
    const b = trainStudents({ source: { kind: 'simulator' }, log: log2 }, opts);
    expect(b.model.encoder.state).toEqual(a.model.encoder.state);
    expect(b.model.learner.params).toEqual(a.model.learner.params);
    expect(b.model.learner.innerLr).toEqual(a.model.learner.innerLr);
    expect(b.globalParams).toEqual(a.globalParams);
    expect(b.model.settings.adaptation).toEqual(a.model.settings.adaptation);
    // and the groups do not overlap
    const s = splitData(base.log, split);
    const ids = (h: { id: string }[]) => new Set(h.map((x) => x.id));
    const [tr, va, te] = [ids(s.train), ids(s.validation), ids(s.test)];
    for (const id of te) expect(tr.has(id) || va.has(id)).toBe(false);
    for (const id of va) expect(tr.has(id)).toBe(false);
    expect(tr.size + va.size + te.size).toBe(900);
  }, 30_000);

  it('cuts each student at K: the first K answers support, the following ones query, ragged offsets', () => {
    const { log } = simulateStudents({ students: 60, seed: 12 });
    const h = studentHistories(log);
    const enc = StudentEncoder.fit(log, h.slice(0, 40));
    const e = encodeStudents(log, h.slice(40), enc);
    const which = Int32Array.from([0, 3, 7]), ks = Int32Array.from([1, 5, 12]);
    const b = cutStudents(e, which, ks, 10);
    expect(Array.from(b.supportOffsets)).toEqual([0, 1, 6, 18]);
    expect(Array.from(b.queryOffsets)).toEqual([0, 10, 20, 30]);
    const d = enc.width;
    for (let t = 0; t < 3; t++) {
      const hist = h[40 + which[t]!]!.rows;
      for (let i = 0; i < ks[t]!; i++) expect(b.ys[b.supportOffsets[t]! + i]).toBe(log.correct[hist[i]!]);
      for (let i = 0; i < 10; i++) {
        expect(b.yq[b.queryOffsets[t]! + i]).toBe(log.correct[hist[ks[t]! + i]!]);
        expect(e.rows[b.queryRows[b.queryOffsets[t]! + i]!]).toBe(hist[ks[t]! + i]);
      }
      // features of a row do not depend on where the task is cut
      const row = e.offsets[which[t]!]! + ks[t]!;
      expect(Array.from(b.xq.subarray(b.queryOffsets[t]! * d, (b.queryOffsets[t]! + 1) * d))).toEqual(Array.from(e.x.subarray(row * d, (row + 1) * d)));
    }
    expect(() => cutStudents(e, [0], [10_000], 5)).toThrow(RangeError);
  });

  it('encodes a history the same from the log and from item ids, and candidates as the next answer', () => {
    const { log } = simulateStudents({ students: 200, seed: 13, secondSkillFraction: 0 });
    const h = studentHistories(log);
    const enc = StudentEncoder.fit(log, h.slice(0, 150));
    const rows = h[170]!.rows;
    const fromLog = enc.encodeLogRows(log, rows);
    const ids = Array.from(rows, (i) => log.itemIds[log.item[i]!]!);
    expect(Array.from(enc.encodeAnswers(ids))).toEqual(Array.from(fromLog));
    const d = enc.width, n = ids.length;
    const next = enc.encodeCandidates(ids.slice(0, n - 1), [ids[n - 1]!]);
    expect(Array.from(next)).toEqual(Array.from(fromLog.subarray((n - 1) * d)));
    // an item no training student answered: default parameters, no skill slot
    const unknown = enc.encodeCandidates([], ['no-such-item']);
    expect(unknown[enc.generalIndex]).toBe(enc.state.defaultA);
    expect(unknown[enc.generalIndex + 1]).toBeCloseTo(-enc.state.defaultB, 6);
  });
});

describe('IRT and Bayes-optimal baselines', () => {
  it('2PL fitting recovers the item parameters of one-skill simulated data', () => {
    const { log, truth } = simulateStudents({ students: 4000, skills: 1, itemsPerSkill: 40, blocksMin: 1, blocksMax: 1, blockLengthMin: 30, blockLengthMax: 40, seed: 14 });
    const h = studentHistories(log);
    const fit = fitIrt2pl(log.item, log.correct, log.itemIds.length, h.map((x) => x.rows));
    const corr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      const n = a.length;
      let ma = 0, mb = 0;
      for (let i = 0; i < n; i++) { ma += a[i]! / n; mb += b[i]! / n; }
      let sab = 0, saa = 0, sbb = 0;
      for (let i = 0; i < n; i++) { sab += (a[i]! - ma) * (b[i]! - mb); saa += (a[i]! - ma) ** 2; sbb += (b[i]! - mb) ** 2; }
      return sab / Math.sqrt(saa * sbb);
    };
    expect(corr(fit.b, truth.difficulty)).toBeGreaterThan(0.97);
    expect(corr(fit.a, truth.discrimination)).toBeGreaterThan(0.7);
  }, 20_000);

  it('MAP ability maximizes the log posterior (grid check)', () => {
    const a = [1.2, 0.7, 1.5, 0.9], b = [0.3, -1, 1.1, 0], y = [1, 0, 1, 1];
    const theta = mapAbility(a, b, y, 4);
    const logPost = (t: number) => -t * t / 2 + a.reduce((s, ai, i) => s + (y[i] ? -Math.log1p(Math.exp(-(ai * t - b[i]!))) : -Math.log1p(Math.exp(ai * t - b[i]!))), 0);
    for (const dt of [-0.01, 0.01]) expect(logPost(theta)).toBeGreaterThan(logPost(theta + dt));
    expect(mapAbility(a, b, y, 0)).toBe(0);
  });

  it('the Bayes-optimal predictor matches numerical integration over a one-skill ability', () => {
    const { log, truth } = simulateStudents({ students: 20, skills: 1, itemsPerSkill: 30, abilitySd: 1.3, seed: 15 });
    const bayes = bayesPredictor(log, truth, { samples: 200_000, seed: 1 });
    const h = studentHistories(log);
    for (const s of [0, 5]) {
      const rows = h[s]!.rows, k = 6;
      const query = rows.subarray(k, k + 5);
      const got = bayes.predict(rows, k, query).p;
      // quadrature on a fine grid of θ ~ N(0, 1.3²)
      const sig = (z: number) => 1 / (1 + Math.exp(-z));
      let norm = 0;
      const num = new Float64Array(query.length);
      for (let g = -8; g <= 8; g += 0.001) {
        const t = g * 1.3;
        let w = Math.exp(-g * g / 2);
        for (let i = 0; i < k; i++) {
          const j = log.item[rows[i]!]!;
          const p = sig(truth.discrimination[j]! * t - truth.difficulty[j]!);
          w *= log.correct[rows[i]!] ? p : 1 - p;
        }
        norm += w;
        query.forEach((r, q) => (num[q]! += w * sig(truth.discrimination[log.item[r]!]! * t - truth.difficulty[log.item[r]!]!)));
      }
      got.forEach((p, q) => expect(Math.abs(p - num[q]! / norm)).toBeLessThan(0.004));
    }
  }, 20_000);
});

describe('end to end (small)', () => {
  it('the adapted meta-learned model beats the global model once it has seen answers', async () => {
    const data: StudentData = await loadStudentData({ kind: 'simulator', config: { students: 2500, seed: 21 } });
    const opts = { ...STUDENT_DEFAULTS, iterations: 400, globalIterations: 300, ks: [0, 10], bootstrap: 50, bayesSamples: 1024, progress: false };
    const trained = trainStudents(data, opts);
    const ev = evaluateStudents(data, trained.model, opts);
    const at = (k: number, m: string) => ev.rows.find((r) => r.k === k && r.method === m)!.auc.value;
    expect(at(10, 'meta')).toBeGreaterThan(at(10, 'global') + 0.01);
    expect(at(10, 'meta')).toBeGreaterThan(at(0, 'meta'));
    expect(at(10, 'bayes')).toBeLessThan(at(10, 'truth'));
    expect(Math.abs(at(0, 'meta') - at(0, 'global'))).toBeLessThan(0.01); // nothing to adapt to at K = 0
  }, 30_000);
});
