// Every public function refuses malformed input with a MamlError carrying a stable code, and
// never crashes the process.
import { describe, it, expect } from 'vitest';
import {
  MamlError,
  MetaLearner,
  forward,
  gradient,
  hvp,
  initParams,
  metaGradient,
  paramCount,
  paramLayout,
  setThreads,
  sinusoid,
  type ErrorCode,
} from '../src/index.js';

const model = { layers: [1, 8, 1], activation: 'relu', loss: 'mse' } as const;
const ce = { layers: [2, 5, 3], activation: 'tanh', loss: 'cross-entropy' } as const;
const P = paramCount(model);
const params = initParams(model, { seed: 1 });
const batch = sinusoid({ seed: 1, shots: 5, queries: 5 }).sample(4);
const opts = { algorithm: 'maml', innerLr: 0.01, innerSteps: 1 } as const;

function expectCode(fn: () => unknown, code: ErrorCode, match?: RegExp) {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a MamlError').toBeInstanceOf(MamlError);
  expect((caught as MamlError).code).toBe(code);
  if (match) expect((caught as MamlError).message).toMatch(match);
}

async function expectCodeAsync(fn: () => Promise<unknown>, code: ErrorCode) {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MamlError);
  expect((err as MamlError).code).toBe(code);
}

const withNaN = (a: Float32Array, i = 0) => {
  const b = Float32Array.from(a);
  b[i] = NaN;
  return b;
};

describe('model specs', () => {
  const bad: [string, unknown, ErrorCode][] = [
    ['not an object', 42, 'INVALID_ARGUMENT'],
    ['null', null, 'INVALID_ARGUMENT'],
    ['layers missing', { activation: 'relu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['one layer width', { layers: [3], activation: 'relu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['zero width', { layers: [3, 0, 1], activation: 'relu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['fractional width', { layers: [3, 2.5, 1], activation: 'relu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['string width', { layers: [3, '4', 1], activation: 'relu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['absurd width', { layers: [3, 2 ** 40, 1], activation: 'relu', loss: 'mse' }, 'TOO_LARGE'],
    ['overflowing parameter count', { layers: [1 << 20, 1 << 20, 1], activation: 'relu', loss: 'mse' }, 'TOO_LARGE'],
    ['unknown activation', { layers: [1, 4, 1], activation: 'gelu', loss: 'mse' }, 'INVALID_ARGUMENT'],
    ['unknown loss', { layers: [1, 4, 1], activation: 'relu', loss: 'l1' }, 'INVALID_ARGUMENT'],
    ['cross-entropy with one class', { layers: [1, 4, 1], activation: 'relu', loss: 'cross-entropy' }, 'INVALID_ARGUMENT'],
  ];
  for (const [name, spec, code] of bad) {
    it(`${name} → ${code} from initParams, paramCount, paramLayout, forward and MetaLearner`, () => {
      expectCode(() => initParams(spec as never), code);
      expectCode(() => paramCount(spec as never), code);
      expectCode(() => paramLayout(spec as never), code);
      expectCode(() => forward(spec as never, params, new Float32Array(1)), code);
      expectCode(() => new MetaLearner({ model: spec as never }), code);
    });
  }
  it('initParams refuses a bad seed or precision', () => {
    expectCode(() => initParams(model, { seed: -1 }), 'INVALID_ARGUMENT');
    expectCode(() => initParams(model, { seed: 1.5 }), 'INVALID_ARGUMENT');
    expectCode(() => initParams(model, { precision: 'float16' as never }), 'INVALID_ARGUMENT');
    expectCode(() => initParams(model, 'seed' as never), 'INVALID_ARGUMENT');
  });
});

describe('forward, gradient and hvp', () => {
  const x = new Float32Array([0.5, -1]);
  const y = new Float32Array([1, 2]);
  it('refuse params of the wrong kind, length or with NaN', () => {
    expectCode(() => forward(model, Array.from(params) as never, x), 'INVALID_ARGUMENT', /Float32Array/);
    expectCode(() => forward(model, params.subarray(1), x), 'SHAPE_MISMATCH', /length/);
    expectCode(() => forward(model, withNaN(params, 3), x), 'NON_FINITE', /params\[3\]/);
    expectCode(() => forward(model, new Int32Array(P) as never, x), 'INVALID_ARGUMENT');
  });
  it('refuse inputs of another precision, a ragged length or non-finite values', () => {
    expectCode(() => forward(model, params, new Float64Array(2) as never), 'INVALID_ARGUMENT');
    expectCode(() => forward(ce, initParams(ce), new Float32Array(3)), 'SHAPE_MISMATCH', /multiple of the input width 2/);
    expectCode(() => forward(model, params, new Float32Array([1, Infinity])), 'NON_FINITE');
  });
  it('refuse targets of the wrong length, kind or range', () => {
    expectCode(() => gradient(model, params, x, new Float32Array(3)), 'SHAPE_MISMATCH');
    expectCode(() => gradient(ce, initParams(ce), new Float32Array(4), new Float32Array(2) as never), 'INVALID_ARGUMENT', /Int32Array/);
    expectCode(() => gradient(ce, initParams(ce), new Float32Array(4), new Int32Array([0, 3])), 'INVALID_ARGUMENT', /labels must lie in \[0, 2\]/);
    expectCode(() => gradient(ce, initParams(ce), new Float32Array(4), new Int32Array([0, -1])), 'INVALID_ARGUMENT');
  });
  it('gradient and hvp refuse binary-cross-entropy targets outside [0, 1], as metaGradient does', () => {
    const bce = { layers: [1, 4, 1], activation: 'relu', loss: 'binary-cross-entropy' } as const;
    expectCode(() => gradient(bce, initParams(bce), x, new Float32Array([1, 2])), 'INVALID_ARGUMENT', /\[0, 1\]/);
    expectCode(() => hvp(bce, initParams(bce), x, new Float32Array([-1, 0]), new Float32Array(paramCount(bce))), 'INVALID_ARGUMENT');
  });
  it('hvp refuses a direction of the wrong length', () => {
    expectCode(() => hvp(model, params, x, y, new Float32Array(P - 1)), 'SHAPE_MISMATCH');
    expectCode(() => hvp(model, params, x, y, withNaN(new Float32Array(P))), 'NON_FINITE');
  });
});

describe('metaGradient', () => {
  const cases: [string, () => unknown, ErrorCode][] = [
    ['batch not an object', () => metaGradient(model, params, null as never, opts), 'INVALID_ARGUMENT'],
    ['tasks = 0', () => metaGradient(model, params, { ...batch, tasks: 0 }, opts), 'INVALID_ARGUMENT'],
    ['tasks fractional', () => metaGradient(model, params, { ...batch, tasks: 1.5 }, opts), 'INVALID_ARGUMENT'],
    ['xs too short', () => metaGradient(model, params, { ...batch, xs: batch.xs.subarray(1) }, opts), 'SHAPE_MISMATCH'],
    ['yq too long', () => metaGradient(model, params, { ...batch, yq: new Float32Array(batch.yq.length + 1) }, opts), 'SHAPE_MISMATCH'],
    ['NaN in ys', () => metaGradient(model, params, { ...batch, ys: withNaN(batch.ys, 2) }, opts), 'NON_FINITE'],
    ['no query rows', () => metaGradient(model, params, { ...batch, query: 0, xq: new Float32Array(0), yq: new Float32Array(0) }, opts), 'SHAPE_MISMATCH'],
    ['absurd support size', () => metaGradient(model, params, { ...batch, support: 2 ** 40 }, opts), 'TOO_LARGE'],
    ['product of sizes overflows', () => metaGradient(model, params, { ...batch, tasks: 2 ** 20, support: 2 ** 20 }, opts), 'TOO_LARGE'],
    ['offsets not starting at 0', () => metaGradient(model, params, { ...batch, support: undefined, supportOffsets: Int32Array.from([1, 5, 10, 15, 20]) }, opts), 'INVALID_ARGUMENT'],
    ['decreasing offsets', () => metaGradient(model, params, { ...batch, support: undefined, supportOffsets: Int32Array.from([0, 10, 5, 15, 20]) }, opts), 'INVALID_ARGUMENT'],
    ['offsets of the wrong length', () => metaGradient(model, params, { ...batch, support: undefined, supportOffsets: Int32Array.from([0, 5, 10]) }, opts), 'SHAPE_MISMATCH'],
    ['offsets disagreeing with support', () => metaGradient(model, params, { ...batch, supportOffsets: Int32Array.from([0, 4, 10, 15, 20]) }, opts), 'SHAPE_MISMATCH'],
    ['unknown algorithm', () => metaGradient(model, params, batch, { ...opts, algorithm: 'maml2' as never }), 'INVALID_ARGUMENT'],
    ['negative inner steps', () => metaGradient(model, params, batch, { ...opts, innerSteps: -1 }), 'INVALID_ARGUMENT'],
    ['absurd inner steps', () => metaGradient(model, params, batch, { ...opts, innerSteps: 1e9 }), 'TOO_LARGE'],
    ['NaN inner rate', () => metaGradient(model, params, batch, { ...opts, innerLr: NaN }), 'NON_FINITE'],
    ['string inner rate', () => metaGradient(model, params, batch, { ...opts, innerLr: '0.1' as never }), 'INVALID_ARGUMENT'],
    ['per-step rates of the wrong count', () => metaGradient(model, params, batch, { ...opts, innerLr: [0.1, 0.2] }), 'SHAPE_MISMATCH'],
    ['per-parameter rates of the wrong length', () => metaGradient(model, params, batch, { ...opts, innerLr: new Float32Array(P + 1) }), 'SHAPE_MISMATCH'],
    ['step weights of the wrong count', () => metaGradient(model, params, batch, { ...opts, stepWeights: [1] }), 'SHAPE_MISMATCH'],
    ['infinite step weight', () => metaGradient(model, params, batch, { ...opts, stepWeights: [0, Infinity] }), 'NON_FINITE'],
    ['unknown precision', () => metaGradient(model, params, batch, { ...opts, precision: 'half' as never }), 'INVALID_ARGUMENT'],
    ['float64 precision with float32 params', () => metaGradient(model, params, batch, { ...opts, precision: 'float64' }), 'INVALID_ARGUMENT'],
    ['BCE target outside [0, 1]', () => {
      const bce = { layers: [1, 4, 1], activation: 'relu', loss: 'binary-cross-entropy' } as const;
      return metaGradient(bce, initParams(bce), { ...batch, ys: batch.ys.map(() => 2) }, opts);
    }, 'INVALID_ARGUMENT'],
  ];
  for (const [name, fn, code] of cases) it(`${name} → ${code}`, () => expectCode(fn, code));
});

describe('MetaLearner', () => {
  it('refuses bad options', () => {
    expectCode(() => new MetaLearner(undefined as never), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, optimizer: { kind: 'rmsprop' as never } }), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, optimizer: { kind: 'adam', lr: -1 } }), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, optimizer: { kind: 'adam', betas: [0.9, 1.5] } }), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, algorithm: 'reptile', learnInnerLr: true }), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, params: new Float32Array(3) }), 'SHAPE_MISMATCH');
    expectCode(() => new MetaLearner({ model, device: 'tpu' as never }), 'INVALID_ARGUMENT');
    expectCode(() => new MetaLearner({ model, seed: -3 }), 'INVALID_ARGUMENT');
  });

  it('step, adapt, adaptBatch and predict refuse malformed input', async () => {
    const learner = new MetaLearner({ model, seed: 1 });
    expectCode(() => learner.step({ ...batch, xq: batch.xq.subarray(2) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.step({ ...batch, xs: withNaN(batch.xs) }), 'NON_FINITE');
    expectCode(() => learner.adapt({ x: new Float32Array(3), y: new Float32Array(2) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.adapt({ x: [1, 2] as never, y: new Float32Array(2) }), 'INVALID_ARGUMENT');
    expectCode(() => learner.adapt({ x: new Float32Array(2), y: new Float32Array(2) }, { steps: -1 }), 'INVALID_ARGUMENT');
    expectCode(() => learner.adaptBatch({ tasks: 2, support: 3, xs: new Float32Array(5), ys: new Float32Array(6) }), 'SHAPE_MISMATCH');
    expectCode(() => learner.predict(new Float32Array([NaN])), 'NON_FINITE');
    await expectCodeAsync(() => learner.stepAsync({ ...batch, ys: new Float32Array(1) }), 'SHAPE_MISMATCH');
    await expectCodeAsync(() => learner.adaptAsync({ x: new Float32Array(2), y: new Float32Array(1) }), 'SHAPE_MISMATCH');
    await expectCodeAsync(() => learner.adaptBatchAsync({ tasks: 1, support: 2, xs: new Float32Array(2), ys: new Float32Array(1) }), 'SHAPE_MISMATCH');
    // the learner is still usable after refused calls
    expect(Number.isFinite(learner.step(batch).loss)).toBe(true);
  });

  it('a diverging meta-step is refused with NON_FINITE and leaves the parameters unchanged', () => {
    const learner = new MetaLearner({ model, innerLr: 1e30, seed: 1 });
    const before = learner.params;
    expectCode(() => learner.step(batch), 'NON_FINITE');
    expect(learner.params).toEqual(before);
  });

  it('a synchronous call while an asynchronous one is pending is refused with BUSY', async () => {
    const learner = new MetaLearner({ model, seed: 1 });
    const pending = learner.stepAsync(batch);
    expectCode(() => learner.step(batch), 'BUSY');
    expectCode(() => learner.adapt({ x: new Float32Array(2), y: new Float32Array(2) }), 'BUSY');
    await pending;
    expect(Number.isFinite(learner.step(batch).loss)).toBe(true);
  });

  it('save and load refuse bad paths', () => {
    const learner = new MetaLearner({ model, seed: 1 });
    expectCode(() => learner.save(''), 'INVALID_ARGUMENT');
    expectCode(() => learner.save('/nonexistent-dir-maml/x.safetensors'), 'IO_ERROR');
    expectCode(() => MetaLearner.load('/nonexistent-dir-maml/x.safetensors'), 'IO_ERROR');
    expectCode(() => MetaLearner.load(42 as never), 'INVALID_ARGUMENT');
  });
});

describe('sinusoid and setThreads', () => {
  it('refuse bad sizes and seeds', () => {
    expectCode(() => sinusoid({ shots: -1 }), 'INVALID_ARGUMENT');
    expectCode(() => sinusoid({ seed: 'a' as never }), 'INVALID_ARGUMENT');
    expectCode(() => sinusoid({ amplitude: [5, 1] }), 'INVALID_ARGUMENT');
    expectCode(() => sinusoid({ phase: 3 as never }), 'INVALID_ARGUMENT');
    expectCode(() => sinusoid().sample(0), 'INVALID_ARGUMENT');
    expectCode(() => sinusoid().sample(2 ** 40), 'TOO_LARGE');
    expectCode(() => setThreads(0), 'INVALID_ARGUMENT');
    expectCode(() => setThreads(1e6), 'TOO_LARGE');
  });
});
