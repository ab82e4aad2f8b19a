// The N-way K-shot sampler and class splits: invariants of every episode, seeded determinism,
// and bad inputs.
import { describe, it, expect } from 'vitest';
import { fewShotSampler, splitClasses } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { codeOf as code } from './helpers.js';

/** A labeled set where each row's first value is its row index and its second its class. */
function dataset(classes: number, perClass: number, dim = 3, seed = 1) {
  const rng = new Rng(seed);
  const n = classes * perClass;
  const x = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  for (let r = 0; r < n; r++) {
    const c = 10 + 3 * Math.floor(order[r]! / perClass); // non-contiguous class ids
    labels[r] = c;
    x[r * dim] = r;
    x[r * dim + 1] = c;
    for (let k = 2; k < dim; k++) x[r * dim + k] = rng.range(-1, 1);
  }
  return { x, labels, dim };
}

describe('fewShotSampler', () => {
  const d = dataset(30, 12, 4);

  it('draws ways distinct classes per episode, renumbered 0..ways-1, each with exactly shots support and queries query rows, no row repeated', () => {
    const s = fewShotSampler({ x: d.x, labels: d.labels, inputDim: d.dim, ways: 5, shots: 3, queries: 4, seed: 7 });
    const e = s.sample(50);
    expect([e.tasks, e.support, e.query, e.ways]).toEqual([50, 15, 20, 5]);
    expect(e.xs.length).toBe(50 * 15 * 4);
    expect(e.xq.length).toBe(50 * 20 * 4);
    const seenOrders = new Set<string>();
    for (let t = 0; t < e.tasks; t++) {
      const cls = Array.from(e.classes.subarray(t * 5, (t + 1) * 5));
      expect(new Set(cls).size).toBe(5);
      seenOrders.add(cls.join(','));
      const rows = new Set<number>();
      const count = (xa: Float32Array, ya: Int32Array, per: number, start: number, len: number) => {
        const n = new Array(5).fill(0);
        for (let r = start; r < start + len; r++) {
          const label = ya[r]!;
          expect(label).toBeGreaterThanOrEqual(0);
          expect(label).toBeLessThan(5);
          n[label]++;
          // the row's original class is the class drawn for its label
          expect(xa[r * 4 + 1]).toBe(cls[label]);
          const id = xa[r * 4]!;
          expect(rows.has(id)).toBe(false);
          rows.add(id);
        }
        expect(n).toEqual(new Array(5).fill(per));
      };
      count(e.xs, e.ys, 3, t * 15, 15);
      count(e.xq, e.yq, 4, t * 20, 20);
    }
    expect(seenOrders.size).toBeGreaterThan(40); // classes and their label order vary between episodes
  });

  it('rows are copied exactly from x', () => {
    const s = fewShotSampler({ x: d.x, labels: d.labels, inputDim: d.dim, ways: 2, shots: 1, queries: 1, seed: 3 });
    const e = s.sample(3);
    for (let r = 0; r < 6; r++) {
      const id = e.xs[r * 4]!;
      expect(Array.from(e.xs.subarray(r * 4, r * 4 + 4))).toEqual(Array.from(d.x.subarray(id * 4, id * 4 + 4)));
    }
  });

  it('draws only from the classes it is given', () => {
    const allowed = Int32Array.from([13, 22, 40, 55, 97]);
    const s = fewShotSampler({ x: d.x, labels: d.labels, inputDim: d.dim, ways: 3, shots: 2, queries: 2, seed: 1, classes: allowed });
    const e = s.sample(40);
    for (const c of e.classes) expect(allowed.includes(c)).toBe(true);
    expect(new Set(e.classes).size).toBe(5);
  });

  it('is deterministic per seed, and different seeds differ', () => {
    const mk = (seed: number) => fewShotSampler({ x: d.x, labels: d.labels, inputDim: d.dim, ways: 5, shots: 1, queries: 2, seed });
    const a = mk(11).sample(10), b = mk(11).sample(10), c = mk(12).sample(10);
    expect(Buffer.from(a.xs.buffer).equals(Buffer.from(b.xs.buffer))).toBe(true);
    expect(Buffer.from(a.xq.buffer).equals(Buffer.from(b.xq.buffer))).toBe(true);
    expect(Array.from(a.classes)).toEqual(Array.from(b.classes));
    expect(Buffer.from(a.xs.buffer).equals(Buffer.from(c.xs.buffer))).toBe(false);
  });

  it('refuses bad inputs with MamlError codes', () => {
    const base = { x: d.x, labels: d.labels, inputDim: d.dim, ways: 5, shots: 1, queries: 1, seed: 1 };
    expect(code(() => fewShotSampler({ ...base, ways: 31 }))).toBe('INVALID_ARGUMENT'); // more ways than classes
    expect(code(() => fewShotSampler({ ...base, shots: 8, queries: 5 }))).toBe('INVALID_ARGUMENT'); // 12 examples < 13
    expect(code(() => fewShotSampler({ ...base, shots: 0 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => fewShotSampler({ ...base, ways: 2.5 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => fewShotSampler({ ...base, inputDim: 5 }))).toBe('SHAPE_MISMATCH');
    expect(code(() => fewShotSampler({ ...base, labels: d.labels.subarray(1) }))).toBe('SHAPE_MISMATCH');
    expect(code(() => fewShotSampler({ ...base, labels: Array.from(d.labels) as never }))).toBe('INVALID_ARGUMENT');
    const nan = d.x.slice();
    nan[17] = NaN;
    expect(code(() => fewShotSampler({ ...base, x: nan }))).toBe('NON_FINITE');
    const neg = d.labels.slice();
    neg[3] = -1;
    expect(code(() => fewShotSampler({ ...base, labels: neg }))).toBe('INVALID_ARGUMENT');
    expect(code(() => fewShotSampler({ ...base, classes: Int32Array.from([13, 13, 16, 19, 22]) }))).toBe('INVALID_ARGUMENT');
    expect(code(() => fewShotSampler({ ...base, classes: Int32Array.from([13, 16, 19, 22, 1000]) }))).toBe('INVALID_ARGUMENT');
    const s = fewShotSampler(base);
    expect(code(() => s.sample(0))).toBe('INVALID_ARGUMENT');
  });
});

describe('splitClasses', () => {
  it('gives disjoint train, validation and test classes covering what was asked, seeded', () => {
    const labels = dataset(50, 2).labels;
    const a = splitClasses(labels, { train: 0.6, val: 0.2, test: 0.2 }, 5);
    expect([a.train.length, a.val.length, a.test.length]).toEqual([30, 10, 10]);
    const all = [...a.train, ...a.val, ...a.test];
    expect(new Set(all).size).toBe(50);
    expect(new Set(all)).toEqual(new Set(labels));
    expect(splitClasses(labels, { train: 0.6, val: 0.2, test: 0.2 }, 5)).toEqual(a);
    expect(Array.from(splitClasses(labels, { train: 0.6, val: 0.2, test: 0.2 }, 6).train)).not.toEqual(Array.from(a.train));
  });

  it('takes class counts, and a class count instead of labels', () => {
    const s = splitClasses(1623, { train: 1200, val: 0, test: 423 }, 1);
    expect([s.train.length, s.val.length, s.test.length]).toEqual([1200, 0, 423]);
    const inter = s.train.filter((c) => s.test.includes(c));
    expect(inter.length).toBe(0);
    for (const c of [...s.train, ...s.test]) expect(c >= 0 && c < 1623).toBe(true);
  });

  it('refuses sizes that do not fit, NaN and non-integer counts', () => {
    expect(code(() => splitClasses(10, { train: 8, test: 3 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => splitClasses(10, { train: NaN, test: 0.5 }))).toBe('NON_FINITE');
    expect(code(() => splitClasses(10, { train: 2.5, test: 3 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => splitClasses(10, { train: -0.1, test: 0.5 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => splitClasses(0, { train: 0.5, test: 0.5 }))).toBe('INVALID_ARGUMENT');
  });
});
