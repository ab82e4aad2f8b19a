// The harness side of the baseline protocol (bench/lib/common.mjs): a persistent child
// process per baseline, one JSON request per line, one JSON reply per line.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export class BaselineChild {
  /** cmd, args, env: the child to start; name: for messages. */
  constructor(name, cmd, args, { env, cwd } = {}) {
    this.name = name;
    this.proc = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.stderr = '';
    this.proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    this.waiting = [];
    this.exited = false;
    this.proc.on('exit', (code, signal) => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${name} exited (${code ?? signal}): ${this.stderr.trim().slice(-800)}`));
    });
    this.proc.on('error', (err) => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w.reject(err);
    });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      if (!line.startsWith('{')) return; // stray output of a library
      const w = this.waiting.shift();
      if (!w) return;
      try {
        w.resolve(JSON.parse(line));
      } catch (err) {
        w.reject(err);
      }
    });
  }

  /** Sends a request and resolves with its reply; rejects when the reply says ok: false. */
  async request(req, timeoutMs = 30 * 60_000) {
    if (this.exited) throw new Error(`${this.name} is not running: ${this.stderr.trim().slice(-800)}`);
    const reply = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no reply to ${req.cmd} in ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.proc.stdin.write(JSON.stringify(req) + '\n');
    });
    if (!reply.ok) throw new Error(`${this.name}: ${reply.error}`);
    return reply;
  }

  async close() {
    if (this.exited) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.stdin.end(JSON.stringify({ cmd: 'quit' }) + '\n');
    const t = setTimeout(() => this.proc.kill(), 5000);
    await done;
    clearTimeout(t);
  }
}
