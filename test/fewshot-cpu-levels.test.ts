// The few-shot learners' fast path (native/cpu/fast_fewshot.cc) at every instruction-set
// level (MAML_CPU_LEVEL caps the level of a process) against the plain-loop core, float32.
// Each level runs in a child process over the compiled lib/ (npm test compiles first).
// Tolerance: relative 2-norm error of the gradient 1e-5.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, it, expect } from 'vitest';
import { backendInfo } from '../src/index.js';

const lib = resolve(__dirname, '..', 'lib', 'index.js');
const script = `
import { fewShotLoss, FewShotLearner, backendInfo } from ${JSON.stringify(lib)};
import { Rng } from ${JSON.stringify(resolve(__dirname, '..', 'lib', 'rng.js'))};
const rng = new Rng(5);
const worst = [];
for (const algorithm of ['protonet', 'matching', 'relation'])
  for (const [layers, activation] of [[[9, 37, 11], 'relu'], [[9, 140, 19, 6], 'tanh']]) {
    const options = { algorithm, embedding: { layers, activation } };
    const params = new FewShotLearner({ ...options, seed: 3 }).params;
    const tasks = 4, ways = 5, shots = 2, queries = 3, d = layers[0];
    const rand = (n) => Float32Array.from({ length: n }, () => rng.range(-1.5, 1.5));
    const ep = {
      tasks, ways, support: ways * shots, query: ways * queries,
      xs: rand(tasks * ways * shots * d), xq: rand(tasks * ways * queries * d),
      ys: Int32Array.from({ length: tasks * ways * shots }, (_, i) => Math.floor(i / shots) % ways),
      yq: Int32Array.from({ length: tasks * ways * queries }, () => rng.int(ways)),
    };
    const f = fewShotLoss(options, params, ep);
    const r = fewShotLoss({ ...options, kernel: 'reference' }, params, ep);
    let e = 0, n = 0;
    for (let i = 0; i < r.grad.length; i++) { e += (f.grad[i] - r.grad[i]) ** 2; n += r.grad[i] ** 2; }
    worst.push(Math.sqrt(e / n), Math.abs(f.loss - r.loss) / r.loss);
  }
console.log(JSON.stringify({ isa: backendInfo().cpu.build?.isa, worst: Math.max(...worst) }));
`;

const top = backendInfo().cpu.build?.isa;
const levels: [string, string][] = [['1', 'baseline'], ['3', 'avx2'], ['4', 'avx512']];

describe('few-shot fast path at every instruction-set level', () => {
  for (const [level, isa] of levels) {
    const supported = top === 'avx512' || (top === 'avx2' && level !== '4') || level === '1';
    it.skipIf(!supported)(`${isa} matches the reference core within 1e-5${supported ? '' : ` (skipped: this CPU runs ${top})`}`, () => {
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, MAML_CPU_LEVEL: level },
      });
      const r = JSON.parse(out.trim().split('\n').pop()!);
      expect(r.isa).toBe(isa);
      expect(r.worst).toBeLessThan(1e-5);
    }, 60_000);
  }
});
