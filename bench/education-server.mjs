#!/usr/bin/env node
// Benchmark of examples/student-server.mjs under concurrent load, batched asynchronous
// adaptation against the blocking baseline (a synchronous adapt() per request).
//
//   node bench/education-server.mjs [--checkpoint FILE | --hidden W,W] [--seconds 5] [--clients 64] [--students 2000]
//
// Without --checkpoint it first trains a small student model (simulated students, 300
// meta-steps with the default logistic network; 20 with --hidden layers, enough to load the
// server with heavier adaptations) into a temporary
// directory. Each server runs in its own process, so the load
// generator does not share its event loop; the server reports its own worst event-loop delay
// (perf_hooks.monitorEventLoopDelay, reset after a one-second warm-up). Each client loops:
// with probability 0.3 it POSTs 1-3 answers of a random student (which re-adapts that
// student), otherwise it GETs that student's predictions for 10 random items.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadStudentData, trainStudents, STUDENT_DEFAULTS, Rng } from 'maml-native';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    clients: { type: 'string', default: '64' },
    students: { type: 'string', default: '2000' },
    hidden: { type: 'string', default: '' },
  },
});
const seconds = Number(values.seconds), clients = Number(values.clients), nStudents = Number(values.students);

let checkpoint = values.checkpoint;
if (!checkpoint) {
  const dir = mkdtempSync(join(tmpdir(), 'maml-edu-bench-'));
  checkpoint = join(dir, 'students.safetensors');
  process.stderr.write(`training a small student model into ${checkpoint} ...\n`);
  const data = await loadStudentData({ kind: 'simulator', config: { students: 2000 } });
  const hidden = values.hidden ? values.hidden.split(',').map(Number) : [];
  trainStudents(data, { ...STUDENT_DEFAULTS, hidden, iterations: hidden.length ? 20 : 300, metaBatch: 64, globalIterations: 50, ks: [0, 1, 5, 20], stepsGrid: [1, 3, 8], rateScaleGrid: [0.5, 1, 2], scratchLrGrid: [0.3], scratchStepsGrid: [3], progress: false }).model.save(checkpoint);
}
const items = JSON.parse(readFileSync(checkpoint.replace(/\.safetensors$/, '') + '.education.json', 'utf8')).encoder.items.map((it) => it.id);

function startServer(sync) {
  return new Promise((res, rej) => {
    const args = [resolve(here, '..', 'examples', 'student-server.mjs'), '--checkpoint', checkpoint, '--port', '0', ...(sync ? ['--sync'] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) res({ child, url: m[1] });
    });
    child.on('exit', (code) => rej(new Error(`server exited with ${code} before listening`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
function request(url, method, body) {
  return new Promise((res, rej) => {
    const req = http.request(url, { method, agent, headers: body ? { 'content-type': 'application/json' } : {} }, (r) => {
      let text = '';
      r.on('data', (d) => (text += d));
      r.on('end', () => (r.statusCode === 200 ? res(JSON.parse(text)) : rej(new Error(`${r.statusCode} ${text}`))));
    });
    req.on('error', rej);
    req.end(body);
  });
}

async function load(url, durationMs, rng) {
  const latencies = [];
  let posts = 0, gets = 0, errors = 0;
  const end = performance.now() + durationMs;
  const client = async () => {
    while (performance.now() < end) {
      const student = `u${rng.int(nStudents)}`;
      const t = performance.now();
      try {
        if (rng.uniform() < 0.3) {
          const responses = Array.from({ length: 1 + rng.int(3) }, () => ({ item: items[rng.int(items.length)], correct: rng.int(2) }));
          await request(`${url}/students/${student}/responses`, 'POST', JSON.stringify({ responses }));
          posts++;
        } else {
          const q = Array.from({ length: 10 }, () => items[rng.int(items.length)]).join(',');
          await request(`${url}/students/${student}/predictions?items=${q}`, 'GET');
          gets++;
        }
      } catch (err) {
        if (errors++ === 0) process.stderr.write(`first failed request: ${err.message}\n`);
      }
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  return { requests: latencies.length, posts, gets, errors, perSecond: latencies.length / (durationMs / 1000), p50: pct(0.5), p99: pct(0.99) };
}

const results = {};
const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill()));
for (const mode of ['batched', 'sync']) {
  const { child, url } = await startServer(mode === 'sync');
  children.add(child);
  const rng = new Rng(7);
  await load(url, 1000, rng); // warm-up: JIT, students' first answers
  await request(`${url}/stats/reset`, 'POST');
  const r = await load(url, seconds * 1000, rng);
  const stats = await request(`${url}/stats`, 'GET');
  child.kill();
  children.delete(child);
  results[mode] = { ...r, eventLoopMaxMs: stats.eventLoopDelayMs.max, eventLoopP99Ms: stats.eventLoopDelayMs.p99, rounds: stats.rounds, adapted: stats.adapted };
}
agent.destroy();

const b = results.batched, s = results.sync;
const f = (v, d = 1) => v.toFixed(d);
console.log(`education server, ${clients} concurrent clients, ${seconds} s, ${nStudents} students, 30% POST (re-adapt) / 70% GET (10 items)`);
console.log('| server | requests/s | p50 ms | p99 ms | worst event-loop delay ms | p99 event-loop delay ms | students per adaptation call |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, r] of [['batched adaptBatchAsync (example)', b], ['synchronous adapt() per request (baseline)', s]])
  console.log(`| ${name} | ${f(r.perSecond, 0)} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.eventLoopMaxMs)} | ${f(r.eventLoopP99Ms)} | ${f(r.adapted / Math.max(1, r.rounds))} |`);
if (b.errors || s.errors) console.log(`failed requests: batched ${b.errors}, baseline ${s.errors}`);
console.log(`ratio batched / baseline: ${f(b.perSecond / s.perSecond, 2)}× requests/s, worst event-loop delay ${f(b.eventLoopMaxMs / s.eventLoopMaxMs, 2)}×`);
console.log(JSON.stringify({ clients, seconds, students: nStudents, results }));
