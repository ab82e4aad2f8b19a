#!/usr/bin/env node
// A per-student prediction server on Node's own http module.
//
//   node examples/student-server.mjs --checkpoint out/students.safetensors [--port 8080] [--host 127.0.0.1] [--sync]
//
//   POST /students/:id/responses     body {"responses": [{"item": "17", "correct": 1}, ...]}
//        records the answers, re-adapts the student's model, then answers
//        {"student": id, "answered": n}
//   GET  /students/:id/predictions?items=17,42,99
//        {"student": id, "answered": n, "items": [...], "probabilities": [...]}
//        (a student with no answers gets the meta-learned model's predictions)
//   GET  /stats                      event-loop delay (ms) since start, students, adaptation rounds
//
// Re-adaptation is batched: every student whose answers changed since the last round is adapted
// in one native call off the event loop (StudentService over StudentModel.adaptManyAsync), so
// the event loop keeps serving while the cores adapt. --sync adapts each request on the spot,
// blocking: the baseline of bench/education-server.mjs.
// `maml-native train students` writes the checkpoint (and its .education.json beside it).
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { StudentModel, StudentService, MamlError } from 'maml-native';

const MAX_BODY = 1 << 20;

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error(`body larger than ${MAX_BODY} bytes`), { status: 413 }));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * Starts the server. Resolves with { server, service, url, close() }.
 * @param {{ checkpoint: string, port?: number, host?: string, sync?: boolean }} options
 */
export async function startStudentServer({ checkpoint, port = 8080, host = '127.0.0.1', sync = false }) {
  const model = StudentModel.load(checkpoint);
  const service = new StudentService(model, { mode: sync ? 'sync' : 'batched' });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let requests = 0;

  const server = http.createServer(async (req, res) => {
    requests++;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (req.method === 'POST' && parts.length === 3 && parts[0] === 'students' && parts[2] === 'responses') {
        let body;
        try {
          body = JSON.parse(await readBody(req));
        } catch (err) {
          return send(res, err.status ?? 400, { error: err.status ? err.message : `the body is not JSON: ${err.message}` });
        }
        const { answered } = await service.record(parts[1], body?.responses);
        return send(res, 200, { student: parts[1], answered });
      }
      if (req.method === 'GET' && parts.length === 3 && parts[0] === 'students' && parts[2] === 'predictions') {
        const items = (url.searchParams.get('items') ?? '').split(',').filter((s) => s.length > 0);
        const { answered, probabilities } = await service.predict(parts[1], items);
        return send(res, 200, { student: parts[1], answered, items, probabilities: Array.from(probabilities) });
      }
      if (req.method === 'GET' && url.pathname === '/stats') {
        const ms = (ns) => ns / 1e6;
        return send(res, 200, {
          eventLoopDelayMs: { max: ms(delay.max), p99: ms(delay.percentile(99)), mean: ms(delay.mean) },
          students: service.students,
          rounds: service.rounds,
          adapted: service.adapted,
          requests,
          mode: service.mode,
        });
      }
      if (req.method === 'POST' && url.pathname === '/stats/reset') {
        delay.reset();
        return send(res, 200, { reset: true });
      }
      return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    } catch (err) {
      if (err instanceof MamlError && err.code === 'INVALID_ARGUMENT') return send(res, 400, { error: err.message, code: err.code });
      return send(res, 500, { error: String(err?.message ?? err), code: err?.code });
    }
  });
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    server,
    service,
    url: `http://${host}:${address.port}`,
    close: () => new Promise((resolve) => { delay.disable(); server.closeAllConnections?.(); server.close(resolve); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: { checkpoint: { type: 'string', default: 'out/students.safetensors' }, port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' }, sync: { type: 'boolean', default: false } },
  });
  const { url } = await startStudentServer({ checkpoint: values.checkpoint, port: Number(values.port), host: values.host, sync: values.sync });
  process.stdout.write(`listening on ${url}\n`);
  const stop = () => process.exit(0);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
