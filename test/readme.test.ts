// The README's example runs as written (with the package name pointed at the sources), and
// adaptation helps: the adapted model fits the new task better than the meta-learned one.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect } from 'vitest';

describe('README', () => {
  it('the example runs and writes its checkpoint', async () => {
    const readme = readFileSync(resolve(__dirname, '..', 'README.md'), 'utf8');
    const code = /## Example\s+```js\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(code, 'the README has a js example under "## Example"').toBeTruthy();
    const work = mkdtempSync(join(tmpdir(), 'maml-readme-'));
    const src = resolve(__dirname, '..', 'src', 'index.ts');
    const dir = resolve(__dirname, '.generated');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'readme-example.ts');
    const logged: unknown[] = [];
    const patched = code!
      .replace(`from 'maml-native'`, `from ${JSON.stringify(src)}`)
      .replace(`'sine.safetensors'`, JSON.stringify(join(work, 'sine.safetensors')))
      .replace(/console\.log\(/g, 'globalThis.__readmeLog(');
    writeFileSync(file, `${patched}\nexport const done = true;\nexport { learner, user, model };\n`);
    (globalThis as Record<string, unknown>).__readmeLog = (v: unknown) => logged.push(v);
    const mod = await import(file);
    expect(mod.done).toBe(true);
    expect(existsSync(join(work, 'sine.safetensors'))).toBe(true);
    expect(logged).toHaveLength(1);
    const pred = logged[0] as Float32Array;
    expect(pred).toBeInstanceOf(Float32Array);
    expect(pred.length).toBe(10);
    expect(pred.every(Number.isFinite)).toBe(true);
    const mse = (p: Float32Array) => p.reduce((s, v, i) => s + (v - mod.user.yq[i]) ** 2, 0) / p.length;
    expect(mse(pred)).toBeLessThan(mse(mod.learner.predict(mod.user.xq)));
  }, 60_000);
});
