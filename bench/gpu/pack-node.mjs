// bench/gpu/pack-node.mjs: packs what the GPU machine lacks for the Node.js half of bench/gpu.sh
// (that machine has nvcc, Python and PyTorch, but no Node.js and no registry). Writes the
// folder .gpunode/ (ignored by git through .git/info/exclude; pass it in the device call's
// `carry`):
//   node.xz             this machine's node binary, xz-compressed (~27 MB)
//   modules.tar.xz      node_modules pruned to vitest, the package's runtime dependencies and
//                       everything they need (their dependencies and installed optional ones),
//                       and lib/ (the compiled TypeScript, rebuilt here first)
//   maml_native.node    the CPU addon built here (build/Release)
//   maml_cuda.node      the CUDA addon built here (build-cuda/Release; sm_80/sm_90 + PTX)
//   gpu_check           bench/gpu/gpu_check.cu built here with nvcc (where nvcc is found), and
//                       gpu_check.sources, the hash of its sources (bench/gpu/source-hash.sh):
//                       bench/gpu.sh runs it instead of building there when the hash matches
//                       (saves ~45 s of device time), and falls back to it if its build fails
//   gpu_check_prev      with --prev COMMIT: gpu_check built from that commit's sources (a git
//                       worktree in the temporary folder), timed by bench/gpu.sh beside the
//                       current build in the same run
// bench/gpu.sh unpacks it when present and runs the GPU vitest suites with the real vitest.
//   node bench/gpu/pack-node.mjs [--prev COMMIT]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = path.join(root, '.gpunode');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

/** Node's resolution of package `name` from the package directory `from` (nested first). */
function resolvePackage(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === path.dirname(dir)) return null;
  }
}

const keep = new Set();
const queue = [...Object.keys(pkg.dependencies ?? {}), 'vitest'].map((name) => ({ name, from: root, optional: false }));
while (queue.length) {
  const { name, from, optional } = queue.shift();
  const dir = resolvePackage(name, from);
  if (!dir) {
    if (!optional) throw new Error(`${name} (needed from ${path.relative(root, from) || '.'}) is not installed`);
    continue;
  }
  if (keep.has(dir)) continue;
  keep.add(dir);
  const p = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys(p.dependencies ?? {})) queue.push({ name: dep, from: dir, optional: false });
  for (const dep of Object.keys(p.optionalDependencies ?? {})) queue.push({ name: dep, from: dir, optional: true });
}
// a nested package travels with its parent's folder; list only the outermost ones
const dirs = [...keep].map((d) => path.relative(root, d)).sort();
const outer = dirs.filter((d) => !dirs.some((o) => o !== d && d.startsWith(o + path.sep)));
// node_modules/.bin links are not needed: bench/gpu.sh calls vitest's entry file directly

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
const exclude = path.resolve(root, execFileSync('git', ['rev-parse', '--git-path', 'info/exclude'], { cwd: root, encoding: 'utf8' }).trim());
fs.mkdirSync(path.dirname(exclude), { recursive: true });
if (!(fs.existsSync(exclude) && fs.readFileSync(exclude, 'utf8').split('\n').includes('/.gpunode/')))
  fs.appendFileSync(exclude, '/.gpunode/\n');

execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
execFileSync('tar', ['-cJf', path.join(out, 'modules.tar.xz'), 'lib', ...outer], { cwd: root, env: { ...process.env, XZ_OPT: '-6 -T2' } });
fs.writeFileSync(path.join(out, 'node.xz'), execFileSync('xz', ['-3', '-T2', '-c', process.execPath], { maxBuffer: 1 << 30 }));
for (const [from, to] of [
  ['build/Release/maml_native.node', 'maml_native.node'],
  ['build-cuda/Release/maml_cuda.node', 'maml_cuda.node'],
]) {
  if (fs.existsSync(path.join(root, from))) fs.copyFileSync(path.join(root, from), path.join(out, to));
  else console.warn(`pack-node: ${from} is missing (npm run build:native first)`);
}
const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;
// the same command line as bench/gpu.sh's
const buildCheck = (cwd, file) =>
  execFileSync('nvcc', ['-std=c++17', '-O3', `-arch=${process.env.MAML_GPU_ARCH ?? 'sm_90'}`, '-I', 'native', 'bench/gpu/gpu_check.cu',
    'native/cuda/meta_kernels.cu', 'native/cuda/cuda_learner.cu', 'native/cpu/thread_pool.cc', '-lpthread', '-o', file],
    { cwd, stdio: 'inherit' });
const prevAt = process.argv.indexOf('--prev');
if (nvcc) {
  buildCheck(root, path.join(out, 'gpu_check'));
  // bench/gpu.sh uses this build instead of compiling there when the sources hash the same
  fs.writeFileSync(path.join(out, 'gpu_check.sources'), execFileSync('bash', ['bench/gpu/source-hash.sh'], { cwd: root }));
  if (prevAt > 0) {
    const commit = process.argv[prevAt + 1];
    const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'maml-prev-'));
    execFileSync('git', ['worktree', 'add', '--detach', '-f', tree, commit], { cwd: root, stdio: 'inherit' });
    try {
      buildCheck(tree, path.join(out, 'gpu_check_prev'));
      fs.writeFileSync(path.join(out, 'gpu_check_prev.commit'), execFileSync('git', ['rev-parse', '--short', commit], { cwd: root }));
    } finally {
      execFileSync('git', ['worktree', 'remove', '--force', tree], { cwd: root, stdio: 'inherit' });
    }
  }
} else console.warn('pack-node: no nvcc here, so no prebuilt gpu_check (bench/gpu.sh builds it there)');
let total = 0;
for (const f of fs.readdirSync(out)) total += fs.statSync(path.join(out, f)).size;
console.log(`pack-node: ${outer.length} packages (${keep.size} with nested ones), node ${process.version}; ` +
  `.gpunode/ holds ${(total / 2 ** 20).toFixed(1)} MiB: ${fs.readdirSync(out).join(', ')}`);
