// The cluster kernel's synchronization (native/cuda/task_cluster.hpp, kernel variant 4) under
// ThreadSanitizer: test/native/cluster_race.cc runs it on host-emulated clusters of 2 to 5
// blocks of 2 and 3 threads (binding/host_block.hpp), where every sync() is a barrier of all the
// cluster's threads, as on the GPU. A block that reads a peer's memory, or reuses a buffer a
// peer writes, without a sync() in between is a data race TSan reports (removing either the
// forward's first sync or the one between two layers' delta exchanges was checked to be
// reported). Needs g++ with its ThreadSanitizer runtime (every machine of this project's kind
// has it); where either is missing the test says so and skips.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, it, expect } from 'vitest';

const root = resolve(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'maml-tsan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Why the sanitizer build cannot run here, or '' where it can. */
function unavailable(): string {
  const probe = join(dir, 'probe.cc');
  writeFileSync(probe, 'int main() { return 0; }\n');
  const r = spawnSync('g++', ['-fsanitize=thread', probe, '-o', join(dir, 'probe')], { encoding: 'utf8' });
  if (r.error) return `no g++ here (${r.error.message})`;
  if (r.status !== 0) return `g++ has no ThreadSanitizer runtime: ${r.stderr.split('\n')[0]}`;
  return '';
}
const why = unavailable();
if (why) console.warn(`cluster-race: skipped: ${why}`);

describe.skipIf(why !== '')('the cluster kernel under ThreadSanitizer', () => {
  it('has no data race between the blocks of a cluster, and gives the same gradient bits for 2 and 3 threads per block', () => {
    const bin = join(dir, 'cluster_race');
    const cc = spawnSync('g++', ['-std=c++17', '-O1', '-g', '-fsanitize=thread', `-I${join(root, 'native')}`,
      join(root, 'test', 'native', 'cluster_race.cc'), '-o', bin, '-lpthread'], { encoding: 'utf8', timeout: 120_000 });
    expect(cc.status, cc.stderr).toBe(0);
    const r = spawnSync(bin, [], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, TSAN_OPTIONS: 'halt_on_error=1' } });
    expect(r.stderr).not.toContain('ThreadSanitizer');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBe(6);
    for (const line of lines) expect(line).toMatch(/^ok /);
  }, 180_000);
});
