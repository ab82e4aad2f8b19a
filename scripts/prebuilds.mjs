#!/usr/bin/env node
// prebuilds.mjs: builds the prebuilt CPU addon for this platform; `npm run prebuilds`.
//
//   node scripts/prebuilds.mjs          prebuilds/<platform>-<arch>/maml-native.napi.<libc>.node
//   node scripts/prebuilds.mjs --cuda   also prebuilds/<platform>-<arch>/maml_cuda.node, from a
//                                       fresh `npm run build:cuda` (needs nvcc)
//
// prebuildify --napi --strip --tag-libc, targeting the running Node with its own headers
// (npm_config_nodedir, as in build-native.mjs), so that nothing is downloaded; with --napi alone
// prebuildify would target the newest Node it knows and download that version's headers.
// Node-API 8 makes the binary work on every Node >= 20. prebuildify moves the build out of
// build/Release; node-gyp-build then loads the prebuild, which this script checks before it
// ends. Run it on each platform to be published (linux-x64, linux-arm64, darwin-arm64, ...).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { findNodeGyp, jobs, log, nodeGypEnv, root } from './build-native.mjs';

const require = createRequire(path.join(root, 'package.json'));
const isWin = process.platform === 'win32';
const withCuda = process.argv.includes('--cuda');
const outDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}

/** prebuildify spawns node-gyp as one executable: give it one that runs node-gyp.js with this Node. */
function nodeGypCommand() {
  const gyp = findNodeGyp();
  if (!gyp) fail('node-gyp was not found (not on PATH, not next to npm); it ships with npm.');
  if (gyp.args.length === 0) return gyp.cmd;
  if (isWin) return `"${gyp.cmd}" "${gyp.args[0]}"`; // prebuildify runs it through a shell on Windows
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'maml-prebuild-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const wrapper = path.join(dir, 'node-gyp');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec "${gyp.cmd}" "${gyp.args[0]}" "$@"\n`, { mode: 0o755 });
  return wrapper;
}

async function prebuildCpu() {
  let prebuildify;
  try {
    prebuildify = require('prebuildify');
  } catch {
    fail('prebuildify is not installed (a devDependency): run `npm install` in the repository.');
  }
  Object.assign(process.env, nodeGypEnv(), { JOBS: String(jobs()) }); // node-gyp reads JOBS
  const t0 = Date.now();
  log(`prebuildify --napi --strip --tag-libc for Node ${process.versions.node} (${process.platform}-${process.arch})`);
  await new Promise((resolve, reject) =>
    prebuildify(
      {
        cwd: root,
        napi: true,
        strip: true,
        tagLibc: true,
        targets: [process.versions.node],
        nodeGyp: nodeGypCommand(),
      },
      (err) => (err ? reject(err) : resolve()),
    ),
  ).catch((err) => fail(`prebuildify failed: ${err.message}`));
  log(`CPU prebuild written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

function prebuildCuda() {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), '--cuda-only', '--force'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) fail('the CUDA addon did not build; see above.');
  const dest = path.join(outDir, 'maml_cuda.node'); // no tags: node-gyp-build ranks it below the CPU prebuild
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'build-cuda', 'Release', 'maml_cuda.node'), dest);
  if (process.platform === 'linux') spawnSync('strip', ['--strip-all', dest], { stdio: 'inherit' });
  log(`CUDA prebuild written: ${path.relative(root, dest)}`);
}

/** What node-gyp-build picks when there is no build/ folder, loaded in a fresh process. */
function verify() {
  const check = `
    const p = require('node-gyp-build').path(process.argv[1]);
    const addon = require(p);
    console.log(JSON.stringify({ path: p, build: addon.buildInfo() }));`;
  const r = spawnSync(process.execPath, ['-e', check, root], {
    cwd: root,
    env: { ...process.env, PREBUILDS_ONLY: '1' },
    encoding: 'utf8',
  });
  if (r.status !== 0) fail(`node-gyp-build could not load the prebuild:\n${r.stderr}`);
  const { path: p, build } = JSON.parse(r.stdout);
  if (!p.startsWith(outDir)) fail(`node-gyp-build picked ${p}, not a prebuild in ${outDir}`);
  log(`verified: node-gyp-build loads ${path.relative(root, p)} (${build.compiler}, cuda: ${build.cuda})`);
}

await prebuildCpu();
if (withCuda) prebuildCuda();
verify();
for (const f of fs.readdirSync(outDir)) {
  log(`  ${path.relative(root, path.join(outDir, f))}  ${(fs.statSync(path.join(outDir, f)).size / 1024).toFixed(0)} KiB`);
}
