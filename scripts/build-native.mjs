#!/usr/bin/env node
// build-native.mjs: builds the native addons; the package's `install` script.
//
//   node scripts/build-native.mjs               npm install: the CPU addon (unless a usable
//                                                prebuild exists) and the CUDA addon (when nvcc
//                                                is found), built at the same time
//   node scripts/build-native.mjs --force       npm run build:native: rebuild both from source
//   node scripts/build-native.mjs --cuda-only --force
//                                                npm run build:cuda: only the CUDA addon
//
// CPU addon: node-gyp and binding.gyp -> build/Release/maml_native.node. Its failure fails the
// install, with the possible fixes. Nothing is downloaded: npm_config_nodedir is pointed at the
// running Node's own headers when it ships them (<prefix>/include/node/common.gypi).
// CUDA addon: cmake-js and CMakeLists.txt -> build-cuda/Release/maml_cuda.node, when nvcc is
// found (PATH, $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin), cmake-js resolves from this
// package and MAML_NATIVE_NO_CUDA is unset. During an install its failure is a one-line warning
// (the CPU addon is used) and its output goes to build-cuda/cuda-build.log.
// The two builds run concurrently. Progress goes to stderr, one line per step.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const isWin = process.platform === 'win32';

export function log(msg) {
  process.stderr.write(`maml-native: ${msg}\n`);
}

export function jobs() {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

function seconds(t0) {
  return `${((Date.now() - t0) / 1000).toFixed(1)} s`;
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The first executable called `name` on PATH, or null. */
export function which(name) {
  const exts = isWin ? (process.env.PATHEXT || '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const p = path.join(dir, name + ext);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        if (isFile(p)) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/**
 * How to run node-gyp: on PATH (npm scripts put npm's bundled copy there), else next to the
 * npm that runs us, else npm's usual global locations. Returns { cmd, args, shell, where }.
 */
export function findNodeGyp() {
  const onPath = which('node-gyp');
  if (onPath) return { cmd: onPath, args: [], shell: isWin, where: onPath };
  const scripts = [];
  if (process.env.npm_execpath) {
    scripts.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  scripts.push('/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  const execDir = path.dirname(process.execPath);
  scripts.push(
    isWin
      ? path.join(execDir, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
      : path.join(execDir, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  );
  try {
    scripts.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of this package
  }
  for (const s of scripts) {
    if (isFile(s)) return { cmd: process.execPath, args: [path.resolve(s)], shell: false, where: path.resolve(s) };
  }
  return null;
}

/**
 * The environment for node-gyp: npm_config_nodedir set to the running Node's install prefix
 * when that prefix ships the headers node-gyp needs, so that nothing is downloaded. A nodedir
 * the user set (npm config or environment) is kept.
 */
export function nodeGypEnv(base = process.env) {
  const env = { ...base };
  if (env.npm_config_nodedir) return env;
  const prefix = isWin ? path.dirname(process.execPath) : path.resolve(path.dirname(process.execPath), '..');
  if (isFile(path.join(prefix, 'include', 'node', 'common.gypi'))) env.npm_config_nodedir = prefix;
  return env;
}

const running = new Set(); // children started with `group`, stopped by stopAll()
let stopping = false;

/** Stops the builds still running (their whole process group on POSIX). */
export function stopAll() {
  stopping = true;
  for (const child of running) {
    try {
      if (isWin) child.kill();
      else process.kill(-child.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

/**
 * Runs a command; resolves with its exit code (-1 when it could not start). Its output goes to
 * stderr, or to `logFile`. With `group`, it runs in its own process group so that stopAll()
 * stops its compilers too.
 */
export function run(cmd, args, { cwd = root, env = process.env, shell = false, logFile = null, group = false } = {}) {
  return new Promise((resolve) => {
    let fd = 2;
    if (logFile) {
      fs.mkdirSync(path.dirname(logFile), { recursive: true });
      fd = fs.openSync(logFile, 'w');
    }
    const child = spawn(cmd, args, { cwd, env, shell, stdio: ['ignore', fd, fd], detached: group && !isWin });
    if (group) running.add(child);
    const done = (code) => {
      running.delete(child);
      if (fd !== 2) fs.closeSync(fd);
      resolve(code);
    };
    child.on('error', (err) => {
      if (fd !== 2) fs.writeSync(fd, `failed to start ${cmd}: ${err.message}\n`);
      else log(`failed to start ${cmd}: ${err.message}`);
      done(-1);
    });
    child.on('exit', (code, signal) => done(signal ? 128 : (code ?? 1)));
  });
}

/** Loads a .node file in a child process: null if it loads, else the error message. */
function tryLoad(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', 'require(process.argv[1])', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => resolve(e.message));
    child.on('exit', (code) => resolve(code === 0 ? null : (err.split('\n').find((l) => /Error/.test(l)) || err.trim() || `exit ${code}`)));
  });
}

/**
 * A prebuild for this platform and architecture that loads here: the CPU addon as
 * node-gyp-build would pick it, or (kind 'maml_cuda') the CUDA addon
 * prebuilds/<platform>-<arch>/maml_cuda*.node. Null if there is none.
 */
async function usablePrebuild(kind = 'cpu') {
  let file = null;
  if (kind === 'maml_cuda') {
    const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    const names = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /^maml_cuda.*\.node$/.test(n)) : [];
    file = names.length ? path.join(dir, names.sort()[0]) : null;
  } else {
    const saved = process.env.PREBUILDS_ONLY;
    process.env.PREBUILDS_ONLY = '1'; // node-gyp-build reads it once, when it is first loaded
    try {
      file = require('node-gyp-build').path(root);
      // node-gyp-build takes any .node file it finds; the CUDA prebuild is not the CPU addon.
      if (path.basename(file).startsWith('maml_cuda')) file = null;
    } catch {
      file = null;
    } finally {
      if (saved === undefined) delete process.env.PREBUILDS_ONLY;
      else process.env.PREBUILDS_ONLY = saved;
    }
  }
  return file && (await tryLoad(file)) === null ? file : null;
}

function missingTools() {
  if (isWin) return [];
  const missing = [];
  if (!which('python3') && !which('python')) missing.push('python3');
  if (!which('make')) missing.push('make');
  if (!which('c++') && !which('g++') && !which('clang++')) missing.push('a C++17 compiler (g++ or clang++)');
  return missing;
}

const CPU_FIXES = [
  'Possible solutions:',
  '  - install the build tools, then run `npm rebuild maml-native`:',
  '      Debian/Ubuntu: apt-get install python3 make g++',
  '      Fedora/RHEL:   dnf install python3 make gcc-c++',
  '      Alpine:        apk add python3 make g++',
  '      macOS:         xcode-select --install',
  '      Windows:       Visual Studio Build Tools ("Desktop development with C++") and Python 3',
  '  - use Node.js >= 20 from an official build, nvm or a distribution package that includes',
  '    include/node/common.gypi, or set npm_config_nodedir to a directory with Node headers',
  '  - in a clone of the repository: `npm run build:native` rebuilds the addon',
].join('\n');

async function buildCpu(force) {
  if (!force) {
    const prebuild = await usablePrebuild();
    if (prebuild) {
      log(`CPU addon: using the prebuild ${path.relative(root, prebuild)}`);
      return true;
    }
  }
  const gyp = findNodeGyp();
  if (!gyp) {
    log('error: node-gyp was not found (not on PATH, not next to npm); it ships with npm.');
    log(CPU_FIXES);
    return false;
  }
  const env = nodeGypEnv();
  const t0 = Date.now();
  log(`CPU addon: node-gyp rebuild, ${jobs()} jobs${env.npm_config_nodedir ? `, Node headers from ${env.npm_config_nodedir}` : ''}`);
  const code = await run(gyp.cmd, [...gyp.args, 'rebuild', '--jobs', String(jobs())], { env, shell: gyp.shell });
  const file = path.join(root, 'build', 'Release', 'maml_native.node');
  const loadError = code === 0 ? await tryLoad(file) : null;
  if (code !== 0 || loadError) {
    const missing = missingTools();
    log(
      code !== 0
        ? `error: the CPU addon failed to build (node-gyp exited with code ${code}, ${gyp.where}).`
        : `error: the CPU addon was built but does not load: ${loadError}`,
    );
    if (missing.length) log(`missing build tools: ${missing.join(', ')}`);
    log(CPU_FIXES);
    return false;
  }
  log(`CPU addon: built in ${seconds(t0)} (build/Release/maml_native.node)`);
  return true;
}

/** nvcc on PATH, in $CUDA_HOME/bin, $CUDA_PATH/bin or /usr/local/cuda/bin, or null. */
export function findNvcc() {
  const exe = isWin ? 'nvcc.exe' : 'nvcc';
  const onPath = which('nvcc');
  if (onPath) return onPath;
  for (const dir of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean)) {
    const p = path.join(dir, 'bin', exe);
    if (isFile(p)) return p;
  }
  return null;
}

/** cmake-js's command-line entry, resolved from this package, or null. */
function findCmakeJs() {
  try {
    const pkg = require.resolve('cmake-js/package.json');
    const bin = JSON.parse(fs.readFileSync(pkg, 'utf8')).bin;
    const rel = typeof bin === 'string' ? bin : bin?.['cmake-js'];
    const p = path.join(path.dirname(pkg), rel || 'bin/cmake-js');
    return isFile(p) ? p : null;
  } catch {
    return null;
  }
}

/** False when outDir holds a CMake cache configured for another source folder (a moved tree). */
function cacheIsFor(outDir, source) {
  let text;
  try {
    text = fs.readFileSync(path.join(outDir, 'CMakeCache.txt'), 'utf8');
  } catch {
    return true;
  }
  const m = /^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$/m.exec(text);
  return !m || path.resolve(m[1].trim()) === path.resolve(source);
}

/** The first error a build log reports, on one line, or null. */
function firstError(logFile) {
  let lines;
  try {
    lines = fs.readFileSync(logFile, 'utf8').split('\n');
  } catch {
    return null;
  }
  const i = lines.findIndex((l) => /CMake Error|error:|fatal error|Error:/.test(l));
  if (i < 0) return null;
  let text = lines[i].trim();
  if (/^CMake Error/.test(text)) {
    // CMake wraps its message over indented lines that end at a blank one.
    const rest = lines.slice(i + 1);
    const end = rest.findIndex((l) => !l.trim());
    const msg = (end < 0 ? rest : rest.slice(0, end)).map((l) => l.trim()).join(' ');
    if (msg) text = msg.replace(/\s+/g, ' ');
  }
  return text.length > 160 ? text.slice(0, 157) + '...' : text;
}

/**
 * Builds build-cuda/Release/maml_cuda.node. `strict` (build:cuda) streams the output and
 * reports failure; otherwise (install) output goes to a log and failure is one warning line.
 */
async function buildCuda({ force, strict }) {
  const retry = 'then `npm run build:cuda`';
  const skip = (why) => {
    if (strict) log(`error: CUDA addon not built: ${why}`);
    else log(`CUDA addon: skipped (${why}); the CPU addon will be used`);
    return !strict;
  };
  if (!['', '0', 'false'].includes(process.env.MAML_NATIVE_NO_CUDA ?? '')) return skip('MAML_NATIVE_NO_CUDA is set');
  const nvcc = findNvcc();
  if (!nvcc) return skip('nvcc not found on PATH, in $CUDA_HOME/bin or in /usr/local/cuda/bin');
  const cmakeJs = findCmakeJs();
  if (!cmakeJs) {
    // A git clone has it as a devDependency; an installed package has not.
    const where = root.split(path.sep).includes('node_modules') ? ` in ${root}` : '';
    return skip(`cmake-js is not installed: run \`npm install --no-save cmake-js@8 node-api-headers\`${where}, ${retry}`);
  }
  if (!which('cmake')) return skip(`cmake not found on PATH: install CMake >= 3.18, ${retry}`);
  if (!force) {
    const prebuild = await usablePrebuild('maml_cuda');
    if (prebuild) {
      log(`CUDA addon: using the prebuild ${path.relative(root, prebuild)}`);
      return true;
    }
  }

  const outDir = path.join(root, 'build-cuda');
  const logFile = strict ? null : path.join(outDir, 'cuda-build.log');
  if (force || !cacheIsFor(outDir, root)) fs.rmSync(outDir, { recursive: true, force: true });
  const t0 = Date.now();
  log(`CUDA addon: cmake-js with ${nvcc}, ${jobs()} jobs${logFile ? `, log in ${path.relative(root, logFile)}` : ''}`);
  const env = { ...process.env, CUDACXX: process.env.CUDACXX || nvcc };
  const args = [cmakeJs, 'build', '--directory', root, '--out', outDir, '--parallel', String(jobs())];
  if (stopping) return false;
  const code = await run(process.execPath, args, { env, logFile, group: true });
  if (stopping) return false;
  const file = path.join(outDir, 'Release', 'maml_cuda.node');
  const loadError = code === 0 ? (isFile(file) ? await tryLoad(file) : 'the build produced no maml_cuda.node') : null;
  if (code !== 0 || loadError) {
    const why = code !== 0 ? `cmake-js exited with code ${code}` : `the binary does not load: ${loadError}`;
    const first = logFile ? firstError(logFile) : null;
    const where = (first ? `: ${first}` : '') + (logFile ? `; log: ${path.relative(root, logFile)}` : '');
    if (strict) log(`error: the CUDA addon failed to build (${why})`);
    else log(`warning: the CUDA addon failed to build (${why}${where}); the CPU build will be used; retry with \`npm run build:cuda\``);
    return !strict;
  }
  log(`CUDA addon: built in ${seconds(t0)} (build-cuda/Release/maml_cuda.node)`);
  return true;
}

async function main(argv) {
  const force = argv.includes('--force');
  const cudaOnly = argv.includes('--cuda-only');
  const t0 = Date.now();
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      stopAll();
      process.exit(130);
    });
  }
  // Both builds run at once (about 20% faster than one after the other on two cores): the
  // CUDA build's output goes to its log, the CPU build's to the terminal. A CPU failure stops
  // the CUDA build and fails the install.
  const cuda = buildCuda({ force, strict: cudaOnly });
  if (!cudaOnly && !(await buildCpu(force))) {
    stopAll();
    await cuda;
    return 1;
  }
  const cudaOk = await cuda;
  log(`done in ${seconds(t0)}`);
  return cudaOk ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
