"""PyTorch baseline for the maml-native benchmarks: MAML (second order, through
torch.autograd.grad(create_graph=True)), FOMAML and Reptile for an MLP, the tasks of a
meta-batch batched with torch.baddbmm on per-task weights [B, d_out, d_in], and Adam
(torch.optim.Adam) for the meta-step. Parameters in the library's layout: per layer
W [d_out, d_in] (nn.Linear.weight), then b [d_out]. MSE (mean) losses, relu or tanh.

Modes (run by bench/run.mjs; every reply is JSON on stdout):
  python3 pytorch_maml.py serve --threads N     the line protocol of bench/lib/common.mjs
  python3 pytorch_maml.py memory --threads 1 --tasks B --steps S [--iterations 3]
        peak resident memory of second-order MAML meta-steps (VmHWM, after a reset)
  python3 pytorch_maml.py train --threads 1 --iterations 70000
        the MAML paper's sinusoid run end to end (sampling, meta-steps, Adam), timed
"""
import argparse
import json
import math
import os
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


try:
    import torch
except Exception as err:  # the harness reports the row as not run
    if __name__ == "__main__":
        emit({"ok": False, "error": "torch not importable: %s" % err})
        sys.exit(0)
    raise


def blas_info():
    """Which BLAS library the process mapped (torch from Debian uses the system libblas)."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "blas" in line.lower()})
        return [os.path.realpath(l) for l in libs if l.startswith("/")]
    except OSError:
        return []


def split_params(layers, flat):
    out, o = [], 0
    for l in range(1, len(layers)):
        din, dout = layers[l - 1], layers[l]
        out.append(flat[o:o + dout * din].view(dout, din).clone())
        o += dout * din
        out.append(flat[o:o + dout].clone())
        o += dout
    return out


class Meta:
    """One job: model, algorithm, inner loop; forward on per-task weights with baddbmm."""

    def __init__(self, job):
        self.layers = job["model"]["layers"]
        self.act = torch.relu if job["model"]["activation"] == "relu" else torch.tanh
        if job["model"]["loss"] != "mse":
            raise ValueError("pytorch baseline: only the MSE loss is implemented")
        self.algorithm = job["algorithm"]
        self.alpha = job["innerLr"]
        self.steps = job["innerSteps"]
        self.B, self.K, self.Q = job["tasks"], job["support"], job["query"]

    def forward(self, ws, x):
        # ws: [W1 [B,d1,d0], b1 [B,1,d1], ...]; x: [B, n, d0]
        h, L = x, len(ws) // 2
        for l in range(L):
            h = torch.baddbmm(ws[2 * l + 1], h, ws[2 * l].transpose(1, 2))
            if l < L - 1:
                h = self.act(h)
        return h

    def task_sum_loss(self, ws, x, y):
        # Σ over tasks of each task's mean squared error: its gradient is per task
        n = x.shape[1] * y.shape[2]
        return ((self.forward(ws, x) - y) ** 2).sum() / n

    def per_task(self, params):
        B = self.B
        return [p.unsqueeze(0).expand(B, -1, -1) if p.dim() == 2 else p.view(1, 1, -1).expand(B, 1, -1) for p in params]

    def meta_gradient(self, params, batch):
        """Returns (loss, [grad per parameter]): mean query loss at θ_S and its meta-gradient."""
        xs, ys, xq, yq = batch
        B = self.B
        if self.algorithm == "maml":
            ws = self.per_task(params)
            for _ in range(self.steps):
                g = torch.autograd.grad(self.task_sum_loss(ws, xs, ys), ws, create_graph=True)
                ws = [w - self.alpha * gi for w, gi in zip(ws, g)]
            loss = self.task_sum_loss(ws, xq, yq) / B
            return loss.detach(), list(torch.autograd.grad(loss, params))
        # first order: the inner loop without a graph through it
        ws = [w.detach().clone().requires_grad_(True) for w in self.per_task(params)]
        for _ in range(self.steps):
            g = torch.autograd.grad(self.task_sum_loss(ws, xs, ys), ws)
            with torch.no_grad():
                ws = [(w - self.alpha * gi).requires_grad_(True) for w, gi in zip(ws, g)]
        if self.algorithm == "fomaml":
            loss = self.task_sum_loss(ws, xq, yq) / B
            g = torch.autograd.grad(loss, ws)
            return loss.detach(), [gi.sum(0).view_as(p) for gi, p in zip(g, params)]
        if self.algorithm == "reptile":
            with torch.no_grad():
                loss = self.task_sum_loss(ws, xq, yq) / B
                return loss, [p - w.mean(0).view_as(p) for p, w in zip(params, ws)]
        raise ValueError("pytorch baseline: algorithm %s not supported" % self.algorithm)


def tensors_of(job, b):
    layers, B = job["model"]["layers"], job["tasks"]
    d0, dL = layers[0], layers[-1]
    f = lambda a, n, d: torch.tensor(a, dtype=torch.float32).view(B, n, d)
    return (f(b["xs"], job["support"], d0), f(b["ys"], job["support"], dL), f(b["xq"], job["query"], d0), f(b["yq"], job["query"], dL))


def summarize(samples):
    s = sorted(samples)
    def q(p):
        if len(s) == 1:
            return s[0]
        pos = (len(s) - 1) * p
        lo = int(math.floor(pos))
        hi = min(len(s) - 1, lo + 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)
    med = q(0.5)
    dev = sorted(abs(x - med) for x in s)
    m = dev[(len(dev) - 1) // 2] if len(dev) % 2 else 0.5 * (dev[len(dev) // 2 - 1] + dev[len(dev) // 2])
    return {"n": len(s), "median": med, "p10": q(0.1), "p90": q(0.9), "mad": m, "mean": sum(s) / len(s), "min": s[0]}


def time_fn(fn, time_ms, iterations, warmup_ms, warmup_iterations=3):
    t0, i = time.perf_counter(), 0
    while i < warmup_iterations or (time.perf_counter() - t0) * 1e3 < warmup_ms:
        fn(i)
        i += 1
    samples, t0 = [], time.perf_counter()
    while len(samples) < iterations or (time.perf_counter() - t0) * 1e3 < time_ms:
        a = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - a) * 1e3)
        i += 1
    return summarize(samples)


class Session:
    def __init__(self, job):
        self.meta = Meta(job)
        self.batches = [tensors_of(job, b) for b in job["batches"]]
        flat = torch.tensor(job["params"], dtype=torch.float32)
        self.params0 = [p.requires_grad_(True) for p in split_params(self.meta.layers, flat)]
        self.params = [p.detach().clone().requires_grad_(True) for p in self.params0]
        a = job["adam"]
        self.opt = torch.optim.Adam(self.params, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])

    def check(self):
        loss, g = self.meta.meta_gradient(self.params0, self.batches[0])
        return float(loss), torch.cat([x.reshape(-1) for x in g]).tolist()

    def grad(self, i):
        self.meta.meta_gradient(self.params, self.batches[i % len(self.batches)])

    def step(self, i):
        loss, g = self.meta.meta_gradient(self.params, self.batches[i % len(self.batches)])
        for p, gi in zip(self.params, g):
            p.grad = gi
        self.opt.step()


def info(threads):
    return {"impl": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(), "requestedThreads": threads,
            "blas": blas_info(), "python": sys.version.split()[0]}


def serve(threads):
    session = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "quit":
                break
            if cmd == "ping":
                emit({"ok": True})
                continue
            if cmd == "load":
                with open(req["file"]) as f:
                    session = Session(json.load(f))
                emit({"ok": True, "info": info(threads)})
            elif cmd == "check":
                loss, g = session.check()
                emit({"ok": True, "loss": loss, "grad": g})
            elif cmd == "time":
                fn = session.step if req.get("mode") == "step" else session.grad
                stats = time_fn(fn, req.get("time", 1000), req.get("iterations", 10), req.get("warmup", 200), req.get("warmupIterations", 3))
                emit({"ok": True, "stats": stats})
            else:
                raise ValueError("unknown command %s" % cmd)
        except Exception as err:  # noqa: BLE001 - every failure goes back to the harness
            emit({"ok": False, "error": repr(err)})


def read_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def reset_hwm():
    """Resets the resident-set high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sine_batch(gen, B, K, Q):
    amp = torch.rand(B, 1, 1, generator=gen) * 4.9 + 0.1
    phase = torch.rand(B, 1, 1, generator=gen) * math.pi
    x = torch.rand(B, K + Q, 1, generator=gen) * 10 - 5
    y = amp * torch.sin(x - phase)
    return x[:, :K], y[:, :K], x[:, K:], y[:, K:]


def sine_job(B, S, layers, algorithm="maml"):
    return {"model": {"layers": layers, "activation": "relu", "loss": "mse"}, "algorithm": algorithm, "innerLr": 0.01,
            "innerSteps": S, "tasks": B, "support": 10, "query": 10}


def init_params(layers, gen):
    ps = []
    for l in range(1, len(layers)):
        bound = 1 / math.sqrt(layers[l - 1])
        ps.append(((torch.rand(layers[l], layers[l - 1], generator=gen) * 2 - 1) * bound).requires_grad_(True))
        ps.append(((torch.rand(layers[l], generator=gen) * 2 - 1) * bound).requires_grad_(True))
    return ps


def memory(B, S, iterations, layers):
    gen = torch.Generator().manual_seed(1)
    meta = Meta(sine_job(B, S, layers))
    params = init_params(layers, gen)
    batches = [sine_batch(gen, B, 10, 10) for _ in range(iterations)]
    opt = torch.optim.Adam(params, lr=1e-3)
    base = read_status_kib("VmRSS")
    reset = reset_hwm()
    if not reset:
        base = read_status_kib("VmHWM")
    for b in batches:
        loss, g = meta.meta_gradient(params, b)
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
    peak = read_status_kib("VmHWM")
    import resource
    emit({"ok": True, "baseKiB": base, "peakKiB": peak, "hwmReset": reset,
          "maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "info": info(torch.get_num_threads())})


def train(iterations, B, S):
    """The MAML paper's sinusoid run: 1-40-40-1 relu, K = 10, α = 0.01, Adam 1e-3, sampled per step."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(1)
    layers = [1, 40, 40, 1]
    meta = Meta(sine_job(B, S, layers))
    params = init_params(layers, gen)
    opt = torch.optim.Adam(params, lr=1e-3)
    loss = None
    for _ in range(iterations):
        loss, g = meta.meta_gradient(params, sine_batch(gen, B, 10, 10))
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
    seconds = time.perf_counter() - t0
    emit({"ok": True, "seconds": seconds, "iterations": iterations, "stepsPerSecond": iterations / seconds,
          "finalLoss": float(loss) if loss is not None else None, "info": info(torch.get_num_threads())})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["serve", "memory", "train"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--layers", default="1,40,40,1")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    layers = [int(x) for x in a.layers.split(",")]
    if a.mode == "serve":
        serve(a.threads)
    elif a.mode == "memory":
        memory(a.tasks, a.steps, a.iterations, layers)
    else:
        train(a.iterations, a.tasks, a.steps)


if __name__ == "__main__":
    main()
