// Every instruction-set version of the fast kernels (AVX-512, AVX2, baseline; MAML_CPU_LEVEL
// caps the version a process uses) matches the reference core. Each level runs in a child
// process over the compiled lib/ (npm test compiles first).
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, it, expect } from 'vitest';
import { backendInfo } from '../src/index.js';

const lib = resolve(__dirname, '..', 'lib', 'index.js');
const script = `
import { metaGradient, initParams, backendInfo } from ${JSON.stringify(lib)};
import { Rng } from ${JSON.stringify(resolve(__dirname, '..', 'lib', 'rng.js'))};
const rng = new Rng(9);
const worst = [];
for (const [layers, activation, loss] of [[[1, 40, 40, 1], 'relu', 'mse'], [[7, 45, 19, 3], 'tanh', 'cross-entropy'], [[2, 256, 130, 1], 'relu', 'binary-cross-entropy']]) {
  const model = { layers, activation, loss };
  const params = initParams(model, { seed: 2 });
  const B = 5, n = 6, d0 = layers[0], dL = layers[layers.length - 1];
  const rand = (len) => Float32Array.from({ length: len }, () => rng.range(-1, 1));
  const target = (rows) => loss === 'cross-entropy' ? Int32Array.from({ length: rows }, () => rng.int(dL)) : loss === 'mse' ? rand(rows * dL) : Float32Array.from({ length: rows * dL }, () => rng.int(2));
  const batch = { tasks: B, support: n, query: n, xs: rand(B * n * d0), ys: target(B * n), xq: rand(B * n * d0), yq: target(B * n) };
  for (const algorithm of ['maml', 'fomaml', 'meta-sgd']) {
    const opts = { algorithm, innerLr: 0.05, innerSteps: 2 };
    const f = metaGradient(model, params, batch, { ...opts, kernel: 'fast' });
    const r = metaGradient(model, params, batch, { ...opts, kernel: 'reference' });
    let d = 0, nr = 0;
    for (let i = 0; i < r.grad.length; i++) { d += (f.grad[i] - r.grad[i]) ** 2; nr += r.grad[i] ** 2; }
    worst.push(Math.sqrt(d / nr));
  }
}
console.log(JSON.stringify({ isa: backendInfo().cpu.build?.isa, worst: Math.max(...worst) }));
`;

const top = backendInfo().cpu.build?.isa;
const levels: [string, string][] = [['1', 'baseline'], ['3', 'avx2'], ['4', 'avx512']];

describe('fast kernels at every instruction-set level', () => {
  for (const [level, isa] of levels) {
    const supported = top === 'avx512' || (top === 'avx2' && level !== '4') || level === '1';
    it.skipIf(!supported)(`${isa} matches the reference core within 1e-4${supported ? '' : ` (skipped: this CPU runs ${top})`}`, () => {
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, MAML_CPU_LEVEL: level },
      });
      const r = JSON.parse(out.trim().split('\n').pop()!);
      expect(r.isa).toBe(isa);
      expect(r.worst).toBeLessThan(1e-4);
    }, 60_000);
  }
});
