"""PyTorch on CUDA, the baseline of bench/gpu.sh: second-order MAML meta-steps with the tasks
of a meta-batch batched by torch.baddbmm on per-task weights [B, d_out, d_in] (the Meta class
of pytorch_maml.py, moved to the GPU), autograd through the inner loop (create_graph=True),
torch.optim.Adam. Timed with CUDA events after warm-up, median over many steps, rotating 8
batches already on the device. Also the float32 matrix-product rate (torch.mm, 8192^3, TF32
off) that the wide case is compared with.

  python3 pytorch_maml_gpu.py OUT.json     JSON lines to OUT.json, one summary line per case on stdout
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from pytorch_maml import Meta  # noqa: E402

CASES = [
    ("sine_B1024_S5", [1, 40, 40, 1], 1024, 5),
    ("sine_B25_S5", [1, 40, 40, 1], 25, 5),
    ("wide_B256_S5", [1, 256, 256, 1], 256, 5),
    ("sine_B25_S1", [1, 40, 40, 1], 25, 1),
]


def events_median(fn, warmup=10, min_iters=30, max_iters=500, budget_s=5.0):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times, t0 = [], time.perf_counter()
    while len(times) < min_iters or (len(times) < max_iters and time.perf_counter() - t0 < budget_s):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)  # microseconds
    times.sort()
    return times[len(times) // 2], times[len(times) // 10], times[len(times) * 9 // 10], len(times)


def set_tf32(on):
    """TF32 for float32 matrix products on or off (the newer API where torch has it)."""
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
    except Exception:  # older torch: AttributeError or its own "Unknown attribute"
        torch.backends.cuda.matmul.allow_tf32 = on


def sgemm_rate(n=8192, tf32=False):
    set_tf32(tf32)
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    med, _, _, _ = events_median(lambda: torch.mm(a, b), warmup=3, min_iters=10, max_iters=10)
    set_tf32(False)
    return 2.0 * n ** 3 / (med * 1e-6) / 1e12


def maml_case(name, layers, B, S, K=10, Q=10):
    set_tf32(False)
    torch.manual_seed(0)
    job = {"model": {"layers": layers, "activation": "relu", "loss": "mse"}, "algorithm": "maml",
           "innerLr": 0.01, "innerSteps": S, "tasks": B, "support": K, "query": Q}
    meta = Meta(job)
    params = []
    for l in range(1, len(layers)):
        lin = torch.nn.Linear(layers[l - 1], layers[l]).cuda()
        params += [lin.weight.detach().clone().requires_grad_(True), lin.bias.detach().clone().requires_grad_(True)]
    opt = torch.optim.Adam(params, lr=1e-3)
    d0, dL = layers[0], layers[-1]
    batches = [(torch.rand(B, K, d0, device="cuda") * 10 - 5, torch.randn(B, K, dL, device="cuda"),
                torch.rand(B, Q, d0, device="cuda") * 10 - 5, torch.randn(B, Q, dL, device="cuda")) for _ in range(8)]
    state = {"i": 0}

    def step():
        loss, g = meta.meta_gradient(params, batches[state["i"] % 8])
        state["i"] += 1
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()

    med, p10, p90, n = events_median(step)
    total = sum(layers[l - 1] * layers[l] for l in range(1, len(layers)))
    flops = (12.0 * S + 3) * 2 * K * total * B
    return {"case": name, "impl": "pytorch-cuda", "median_us": med, "p10_us": p10, "p90_us": p90, "n": n,
            "flops": flops, "tflops": flops / med * 1e-6, "torch": torch.__version__}


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "pytorch_gpu.json"
    with open(out_path, "w") as out:
        def emit(obj):
            out.write(json.dumps(obj) + "\n")
            out.flush()
        try:
            rate = sgemm_rate()
            rate_tf32 = sgemm_rate(tf32=True)
            emit({"case": "sgemm_8192", "impl": "pytorch-cuda", "tflops": rate, "tflops_tf32": rate_tf32,
                  "device": torch.cuda.get_device_name(0)})
            print("sgemm 8192^3 fp32: %.1f TFLOP/s (TF32: %.1f) on %s" % (rate, rate_tf32, torch.cuda.get_device_name(0)), flush=True)
        except Exception as err:  # keep timing the cases
            emit({"case": "sgemm_8192", "impl": "pytorch-cuda", "error": str(err)})
            print("sgemm FAILED: %s" % err, flush=True)
        for name, layers, B, S in CASES:
            try:
                r = maml_case(name, layers, B, S)
                emit(r)
                print("torch %-16s median %9.1f us (p10 %.1f, p90 %.1f, n %d), %.2f TFLOP/s" %
                      (name, r["median_us"], r["p10_us"], r["p90_us"], r["n"], r["tflops"]), flush=True)
            except Exception as err:
                emit({"case": name, "impl": "pytorch-cuda", "error": str(err)})
                print("torch %-16s FAILED: %s" % (name, err), flush=True)


if __name__ == "__main__":
    main()
