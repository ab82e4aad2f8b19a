"""Prints the table of bench/gpu.sh from the JSON lines of gpu_check (ours) and
pytorch_maml_gpu.py (PyTorch on the same GPU, same run), against the issue's targets.

  python3 gpu_table.py OURS.json TORCH.json [PARITY_STATUS]
"""
import json
import sys


def load(path):
    rows = {}
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[r["case"]] = r
    except OSError as err:
        print("(missing %s: %s)" % (path, err))
    return rows


def us(r):
    if not r:
        return "not run"
    if "error" in r:
        return "failed"
    extra = []
    if r.get("kernel_us") is not None:
        extra.append("kernels %.1f" % r["kernel_us"])
    if r.get("threads"):
        extra.append("%d thr" % r["threads"])
    if r.get("variant", 1) != 1:
        extra.append("kernel %d" % r["variant"])
    return "%.1f us%s" % (r["median_us"], " (%s)" % ", ".join(extra) if extra else "")


def main():
    ours, torch = load(sys.argv[1]), load(sys.argv[2])
    parity = sys.argv[3] if len(sys.argv) > 3 else "?"
    sgemm = torch.get("sgemm_8192", {}).get("tflops")
    print()
    print("maml-native CUDA vs PyTorch CUDA (same GPU, same run); median per meta-step (MAML, second order, Adam)")
    print("parity tests: %s;  fp32 sgemm 8192^3 (torch.mm, TF32 off): %s" %
          (parity, "%.1f TFLOP/s" % sgemm if sgemm else "not measured"))
    print("| case | maml-native | PyTorch | speed-up | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = [
        ("sine_B1024_S5", "sinusoid 1-40-40-1, K=10, S=5, B=1024", ">= 10x"),
        ("sine_B25_S5", "sinusoid, K=10, S=5, B=25", ">= 10x"),
        ("wide_B256_S5", "1-256-256-1, K=10, S=5, B=256", ">= 3x and >= 40% of sgemm"),
        ("sine_B25_S1", "sinusoid, K=10, S=1, B=25 (one step)", "< 100 us (also S=5 row)"),
    ]
    for key, label, target in rows:
        o, t = ours.get(key), torch.get(key)
        ok_o = o and "error" not in o
        ok_t = t and "error" not in t
        speed = t["median_us"] / o["median_us"] if ok_o and ok_t else None
        met = "?"
        if key in ("sine_B1024_S5", "sine_B25_S5") and speed:
            met = "yes" if speed >= 10 else "no"
        elif key == "wide_B256_S5" and speed and sgemm:
            frac = o["tflops"] / sgemm
            met = "%s (%.2f TFLOP/s = %.0f%% of sgemm)" % ("yes" if speed >= 3 and frac >= 0.4 else "no", o["tflops"], 100 * frac)
        elif key == "sine_B25_S1" and ok_o:
            s5 = ours.get("sine_B25_S5", {}).get("median_us")
            met = "%s (S=5: %s)" % ("yes" if o["median_us"] < 100 else "no", "%.1f us" % s5 if s5 else "?")
        print("| %s | %s | %s | %s | %s | %s |" % (label, us(o), us(t), "%.1fx" % speed if speed else "-", target, met))
    # every timed configuration of the wide case (threads/kernel variant): the A/B of the variants
    configs = sorted(k for k in ours if k.startswith("wide_B256_S5@"))
    if configs:
        def one(k):
            r = ours[k]
            if "error" in r:
                return "%s failed" % k.split("@")[1]
            return "%s %.1f us (%.2f TFLOP/s, %s memory)" % (k.split("@")[1], r["median_us"], r["tflops"], r.get("memory", "?"))
        print("wide case by configuration (threads/variant): " + "; ".join(one(k) for k in configs))


main()
