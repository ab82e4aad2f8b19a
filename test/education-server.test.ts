// Serving: examples/student-server.mjs over loopback with concurrent clients gives the answers
// of direct StudentModel calls; StudentService batches re-adaptations and agrees with the
// synchronous path; the checkpoint (safetensors + .education.json) round-trips.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { loadStudentData, trainStudents, StudentModel, StudentService, STUDENT_DEFAULTS, Rng, MamlError, type Answer } from '../src/index.js';

let checkpoint = '';
let items: string[] = [];

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'maml-edu-server-'));
  checkpoint = join(dir, 'students.safetensors');
  const data = await loadStudentData({ kind: 'simulator', config: { students: 1200, seed: 31 } });
  const trained = trainStudents(data, { ...STUDENT_DEFAULTS, iterations: 150, metaBatch: 64, globalIterations: 30, ks: [0, 1, 5, 10], stepsGrid: [1, 3], rateScaleGrid: [1, 2], scratchLrGrid: [0.3], scratchStepsGrid: [3], progress: false });
  trained.model.save(checkpoint);
  items = trained.model.encoder.state.items.map((it) => it.id);
}, 30_000);

function randomAnswers(rng: Rng, n: number): Answer[] {
  return Array.from({ length: n }, () => ({ item: rng.uniform() < 0.05 ? 'never-seen' : items[rng.int(items.length)]!, correct: rng.int(2) }));
}

describe('StudentModel checkpoint', () => {
  it('saves and loads the learner, encoder and settings', () => {
    const a = StudentModel.load(checkpoint);
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-ckpt-'));
    a.save(join(dir, 'copy.safetensors'));
    const b = StudentModel.load(join(dir, 'copy.safetensors'));
    expect(b.learner.params).toEqual(a.learner.params);
    expect(b.encoder.state).toEqual(a.encoder.state);
    expect(b.settings.adaptation).toEqual(a.settings.adaptation);
    const h = randomAnswers(new Rng(1), 7);
    expect(b.predict(b.adapt(h), h, items.slice(0, 5))).toEqual(a.predict(a.adapt(h), h, items.slice(0, 5)));
  });

  it('a missing or corrupt .education.json is a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'maml-edu-ckpt-'));
    const a = StudentModel.load(checkpoint);
    a.learner.save(join(dir, 'lonely.safetensors'));
    expect(() => StudentModel.load(join(dir, 'lonely.safetensors'))).toThrow(expect.objectContaining({ code: 'IO_ERROR', message: expect.stringMatching(/lonely.education.json is missing/) }));
    a.learner.save(join(dir, 'bad.safetensors'));
    writeFileSync(join(dir, 'bad.education.json'), '{"format": "something else"}');
    expect(() => StudentModel.load(join(dir, 'bad.safetensors'))).toThrow(expect.objectContaining({ code: 'CORRUPT_FILE' }));
  });
});

describe('StudentService', () => {
  it('batched re-adaptation gives the predictions of the synchronous path, and batches students', async () => {
    const model = StudentModel.load(checkpoint);
    const batched = new StudentService(model);
    const sync = new StudentService(StudentModel.load(checkpoint), { mode: 'sync' });
    const rng = new Rng(2);
    const histories = Array.from({ length: 30 }, () => randomAnswers(rng, 1 + rng.int(25)));
    await Promise.all(histories.map((h, s) => batched.record(`s${s}`, h)));
    for (const [s, h] of histories.entries()) await sync.record(`s${s}`, h);
    expect(batched.rounds).toBeLessThan(5); // 30 students in a few native calls
    const cand = items.slice(10, 20);
    for (let s = 0; s < histories.length; s++) {
      const a = await batched.predict(`s${s}`, cand), b = await sync.predict(`s${s}`, cand);
      expect(a.answered).toBe(histories[s]!.length);
      for (let i = 0; i < cand.length; i++) expect(Math.abs(a.probabilities[i]! - b.probabilities[i]!)).toBeLessThan(1e-6);
    }
    // a student without answers gets the meta-learned model, even while adaptations run
    const pending = batched.record('late', randomAnswers(rng, 3));
    const fresh = await batched.predict('nobody', cand);
    expect(fresh.answered).toBe(0);
    expect(Array.from(fresh.probabilities)).toEqual(Array.from(model.predict(null, [], cand)));
    await pending;
  });

  it('rejects malformed answers without recording them', async () => {
    const service = new StudentService(StudentModel.load(checkpoint));
    for (const bad of [[], [{ item: '', correct: 1 }], [{ item: '1', correct: 2 }], [null], 'x'])
      await expect(service.record('u', bad)).rejects.toBeInstanceOf(MamlError);
    expect(service.answers('u')).toEqual([]);
    await expect(service.predict('u', [])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('examples/student-server.mjs', () => {
  let child: ChildProcess;
  let url = '';

  beforeAll(async () => {
    child = spawn(process.execPath, [resolve(__dirname, '..', 'examples', 'student-server.mjs'), '--checkpoint', checkpoint, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    url = await new Promise<string>((res, rej) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        const m = /listening on (\S+)/.exec(out);
        if (m) res(m[1]!);
      });
      child.on('exit', (code) => rej(new Error(`the server exited with ${code}: ${err} (is lib/ built? npm test runs tsc first)`)));
    });
  }, 30_000);

  afterAll(() => {
    child?.kill();
  });

  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${url}${path}`, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
    return { status: r.status, json: (await r.json()) as Record<string, unknown> };
  };

  it('answers concurrent clients over loopback as direct calls would', async () => {
    const direct = StudentModel.load(checkpoint);
    const rng = new Rng(3);
    const students = Array.from({ length: 48 }, (_, s) => ({ id: `student-${s}`, chunks: Array.from({ length: 1 + rng.int(4) }, () => randomAnswers(rng, 1 + rng.int(8))) }));
    const candidates = items.slice(0, 12).concat('never-seen');
    const q = encodeURIComponent(candidates.join(','));
    let checked = 0;
    // 16 clients in parallel, each working through its students; one student's answers in order
    const clients = Array.from({ length: 16 }, async (_, c) => {
      for (const st of students.filter((_, s) => s % 16 === c)) {
        const history: Answer[] = [];
        for (const chunk of st.chunks) {
          const post = await call('POST', `/students/${st.id}/responses`, { responses: chunk });
          history.push(...chunk);
          expect(post).toEqual({ status: 200, json: { student: st.id, answered: history.length } });
          const get = await call('GET', `/students/${st.id}/predictions?items=${q}`);
          expect(get.status).toBe(200);
          expect(get.json.answered).toBe(history.length);
          expect(get.json.items).toEqual(candidates);
          const expected = direct.predict(direct.adapt(history), history, candidates);
          (get.json.probabilities as number[]).forEach((p, i) => expect(Math.abs(p - expected[i]!)).toBeLessThan(1e-6));
          checked++;
        }
      }
    });
    await Promise.all(clients);
    expect(checked).toBe(students.reduce((s, x) => s + x.chunks.length, 0));
    const stats = await call('GET', '/stats');
    expect(stats.json.students).toBe(48);
    expect(stats.json.adapted).toBe(checked);
    expect(stats.json.rounds as number).toBeLessThanOrEqual(checked);
    const delay = stats.json.eventLoopDelayMs as { max: number };
    expect(Number.isFinite(delay.max)).toBe(true);
    console.log(`server: ${checked} POST+GET pairs from 16 concurrent clients, ${stats.json.rounds} adaptation rounds, worst event-loop delay ${delay.max.toFixed(1)} ms`);
  }, 60_000);

  it('a student without answers gets the meta-learned model', async () => {
    const direct = StudentModel.load(checkpoint);
    const get = await call('GET', `/students/nobody/predictions?items=${items.slice(0, 3).join(',')}`);
    expect(get.json.answered).toBe(0);
    const expected = direct.predict(null, [], items.slice(0, 3));
    (get.json.probabilities as number[]).forEach((p, i) => expect(Math.abs(p - expected[i]!)).toBeLessThan(1e-6));
  });

  it('answers 400 to malformed requests and 404 to unknown routes', async () => {
    expect((await call('POST', '/students/x/responses', 'not json')).status).toBe(400);
    const bad = await call('POST', '/students/x/responses', { responses: [{ item: '1', correct: 'maybe' }] });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('INVALID_ARGUMENT');
    expect((await call('GET', '/students/x/predictions')).status).toBe(400);
    expect((await call('GET', '/nowhere')).status).toBe(404);
    expect((await call('DELETE', '/students/x/responses')).status).toBe(404);
  });
});
