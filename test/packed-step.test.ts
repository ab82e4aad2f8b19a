// The meta-step's packed protocol (native metaStepPacked: numbers in one Float64Array, arrays
// as positional arguments; what MetaLearner.step uses) against the options-object protocol
// (metaStep): the same update bit for bit for every algorithm, loss and optimizer setting,
// so that no number lands in the wrong slot; and malformed packed calls end in coded errors,
// never a crash.
import { describe, expect, it } from 'vitest';
import { loadNative } from '../src/loader.js';
import { PackedSlot } from '../src/native-types.js';
import { initParams, paramCount, type ModelSpec } from '../src/index.js';
import { Rng } from '../src/rng.js';
import { randomArray, randomBatch, toF32 } from './helpers.js';

const native = loadNative();
const ALGO = { maml: 0, fomaml: 1, reptile: 2, 'meta-sgd': 3, anil: 4 } as const;

interface Setup {
  model: ModelSpec;
  algorithm: keyof typeof ALGO;
  steps: number;
  learnRates: boolean;
  opt: { optKind: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean; clipNorm: number };
  noQuery?: boolean;
}

function make(s: Setup, seed: number) {
  const rng = new Rng(seed);
  const { model } = s;
  const P = paramCount(model);
  const layers = Int32Array.from(model.layers);
  const activation = model.activation === 'relu' ? 0 : 1;
  const loss = { mse: 0, 'cross-entropy': 1, 'binary-cross-entropy': 2 }[model.loss];
  const perParam = s.algorithm === 'meta-sgd';
  const rates = Float32Array.from(perParam ? randomArray(rng, P, 0.05).map((r) => Math.abs(r) + 0.01) : [0.05]);
  const b = toF32(randomBatch(rng, model, 9, 4, 3));
  const off = (per: number) => Int32Array.from({ length: b.tasks + 1 }, (_, t) => t * per);
  const ce = model.loss === 'cross-entropy';
  const state = Float32Array.from([...initParams(model, { seed }), ...(s.learnRates ? rates : [])]);
  const inner = {
    algorithm: ALGO[s.algorithm],
    steps: s.steps,
    weights: Float64Array.from({ length: s.steps + 1 }, (_, i) => (i === s.steps ? 1 : 0.25)),
    rateStepStride: 0,
    rateParamStride: perParam ? 1 : 0,
    wantRateGrad: s.learnRates,
  };
  const batch = {
    tasks: b.tasks,
    supportOffsets: off(4),
    ...(s.noQuery ? {} : { queryOffsets: off(3) }),
    xs: b.xs,
    ...(ce ? { ysLabels: b.ys as Int32Array } : { ys: b.ys as Float32Array }),
    ...(s.noQuery ? {} : { xq: b.xq, ...(ce ? { yqLabels: b.yq as Int32Array } : { yq: b.yq as Float32Array }) }),
  };
  return { P, layers, activation, loss, rates, state, inner, batch, ce };
}

function viaObject(s: Setup, seed: number) {
  const c = make(s, seed);
  const m = new Float32Array(c.state.length).fill(0.01);
  const v = new Float32Array(c.state.length).fill(0.02);
  const r = native.metaStep({
    layers: c.layers, activation: c.activation, loss: c.loss, ...c.inner, ...s.opt, ...c.batch,
    state: c.state, m, v, t: 3, learnRates: s.learnRates, ...(s.learnRates ? {} : { rates: c.rates }),
  });
  return { ...r, state: c.state, m, v };
}

function viaPacked(s: Setup, seed: number) {
  const c = make(s, seed);
  const m = new Float32Array(c.state.length).fill(0.01);
  const v = new Float32Array(c.state.length).fill(0.02);
  const n = new Float64Array(PackedSlot.count);
  const o = s.opt;
  Object.assign(n, {
    [PackedSlot.algorithm]: c.inner.algorithm, [PackedSlot.steps]: s.steps, [PackedSlot.activation]: c.activation,
    [PackedSlot.loss]: c.loss, [PackedSlot.optKind]: o.optKind, [PackedSlot.lr]: o.lr, [PackedSlot.beta1]: o.beta1,
    [PackedSlot.beta2]: o.beta2, [PackedSlot.eps]: o.eps, [PackedSlot.weightDecay]: o.weightDecay,
    [PackedSlot.momentum]: o.momentum, [PackedSlot.dampening]: o.dampening, [PackedSlot.nesterov]: o.nesterov ? 1 : 0,
    [PackedSlot.clipNorm]: o.clipNorm, [PackedSlot.learnRates]: s.learnRates ? 1 : 0, [PackedSlot.reference]: 0,
    [PackedSlot.rateStepStride]: 0, [PackedSlot.rateParamStride]: c.inner.rateParamStride, [PackedSlot.t]: 3,
    [PackedSlot.tasks]: c.batch.tasks, [PackedSlot.wantRateGrad]: s.learnRates ? 1 : 0,
  });
  const out = new Float64Array(2);
  const b = c.batch as unknown as Record<string, never>;
  native.metaStepPacked(n, c.layers, c.inner.weights, s.learnRates ? undefined : c.rates, c.state, m, v, b.supportOffsets, b.queryOffsets,
    b.xs, c.ce ? b.ysLabels : b.ys, b.xq, c.ce ? b.yqLabels : b.yq, out);
  return { loss: out[0]!, gradNorm: out[1]!, state: c.state, m, v };
}

const ADAM = { optKind: 0, lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0, momentum: 0, dampening: 0, nesterov: false, clipNorm: 0.5 };
const SGD = { optKind: 1, lr: 0.03, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, momentum: 0.7, dampening: 0.1, nesterov: true, clipNorm: 0 };
const SETUPS: [string, Setup][] = [
  ['maml, mse, Adam with clipping', { model: { layers: [2, 9, 3], activation: 'tanh', loss: 'mse' }, algorithm: 'maml', steps: 2, learnRates: false, opt: ADAM }],
  ['fomaml, cross-entropy, SGD with momentum', { model: { layers: [3, 7, 4], activation: 'relu', loss: 'cross-entropy' }, algorithm: 'fomaml', steps: 2, learnRates: false, opt: SGD }],
  ['reptile without query sets', { model: { layers: [1, 40, 40, 1], activation: 'relu', loss: 'mse' }, algorithm: 'reptile', steps: 3, learnRates: false, opt: ADAM, noQuery: true }],
  ['meta-sgd with learned rates, binary cross-entropy', { model: { layers: [2, 5, 2], activation: 'tanh', loss: 'binary-cross-entropy' }, algorithm: 'meta-sgd', steps: 1, learnRates: true, opt: ADAM }],
  ['anil, learned rates, SGD', { model: { layers: [3, 6, 5, 2], activation: 'relu', loss: 'mse' }, algorithm: 'anil', steps: 2, learnRates: true, opt: SGD }],
];

describe('metaStepPacked', () => {
  for (const [name, s] of SETUPS) {
    it(`updates exactly as metaStep: ${name}`, () => {
      const a = viaObject(s, 5);
      const b = viaPacked(s, 5);
      expect(b.loss).toBe(a.loss);
      expect(b.gradNorm).toBe(a.gradNorm);
      expect(Array.from(b.state)).toEqual(Array.from(a.state));
      expect(Array.from(b.m)).toEqual(Array.from(a.m));
      expect(Array.from(b.v)).toEqual(Array.from(a.v));
    });
  }

  it('refuses malformed packed arguments with coded errors (no crash)', () => {
    const s = SETUPS[0]![1];
    const c = make(s, 1);
    const good = (): unknown[] => {
      const n = new Float64Array(PackedSlot.count);
      n[PackedSlot.algorithm] = 0; n[PackedSlot.steps] = 2; n[PackedSlot.activation] = 1; n[PackedSlot.loss] = 0;
      n[PackedSlot.lr] = 0.01; n[PackedSlot.beta1] = 0.9; n[PackedSlot.beta2] = 0.99; n[PackedSlot.eps] = 1e-8;
      n[PackedSlot.t] = 1; n[PackedSlot.tasks] = c.batch.tasks;
      const b = c.batch as Record<string, unknown>;
      const P = c.P;
      return [n, c.layers, c.inner.weights, c.rates, new Float32Array(P), new Float32Array(P), new Float32Array(P), b.supportOffsets, b.queryOffsets, b.xs, b.ys, b.xq, b.yq, new Float64Array(2)];
    };
    const call = (args: unknown[]) => (native.metaStepPacked as (...a: unknown[]) => void)(...args);
    expect(() => call(good())).not.toThrow();
    const cases: [string, (a: unknown[]) => void][] = [
      ['numbers too short', (a) => (a[0] = new Float64Array(3))],
      ['numbers not an array', (a) => (a[0] = 7)],
      ['algorithm out of range', (a) => ((a[0] as Float64Array)[PackedSlot.algorithm] = 9)],
      ['steps not an integer', (a) => ((a[0] as Float64Array)[PackedSlot.steps] = 1.5)],
      ['t = 0', (a) => ((a[0] as Float64Array)[PackedSlot.t] = 0)],
      ['tasks = NaN', (a) => ((a[0] as Float64Array)[PackedSlot.tasks] = NaN)],
      ['tasks more than the offsets', (a) => ((a[0] as Float64Array)[PackedSlot.tasks] = 50)],
      ['a flag of 2', (a) => ((a[0] as Float64Array)[PackedSlot.learnRates] = 2)],
      ['layers missing', (a) => (a[1] = undefined)],
      ['weights of the wrong length', (a) => (a[2] = new Float64Array(1))],
      ['rates missing', (a) => (a[3] = undefined)],
      ['state too short', (a) => (a[4] = new Float32Array(3))],
      ['m of another length', (a) => (a[5] = new Float32Array(2))],
      ['v a Float64Array', (a) => (a[6] = new Float64Array((a[6] as Float32Array).length))],
      ['offsets not starting at 0', (a) => (a[7] = Int32Array.from({ length: 10 }, (_, t) => t * 4 + 1))],
      ['query offsets missing', (a) => (a[8] = undefined)],
      ['xs too short', (a) => (a[9] = new Float32Array(2))],
      ['ys an Int32Array', (a) => (a[10] = new Int32Array(36))],
      ['result too short', (a) => (a[13] = new Float64Array(1))],
      ['too few arguments', (a) => a.splice(5)],
    ];
    for (const [what, mutate] of cases) {
      const args = good();
      mutate(args);
      let err: unknown;
      try {
        call(args);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(Error);
      expect((err as { code?: string }).code, what).toMatch(/^(INVALID_ARGUMENT|SHAPE_MISMATCH|NON_FINITE)$/);
    }
  });
});
