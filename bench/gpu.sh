#!/usr/bin/env bash
# bench/gpu.sh: the whole GPU check in one call on the GPU machine (see /work/.library/device):
#   1. machine facts (nvidia-smi, nvcc, node, torch)
#   2. build bench/gpu/gpu_check (nvcc; no Node needed) and run its parity tests
#   3. if Node and node_modules are there: the CUDA addon (cmake-js) and the vitest parity suites
#   4. time the issue's cases: maml-native (gpu_check bench) and PyTorch (same GPU, same run)
#   5. compute-sanitizer memcheck and racecheck on a few small cases (where the tool works)
#   6. print the table last
# Each stage prints "=== stage: ..." and a failing stage does not stop the others. Logs and
# JSON go to $OUT (or /tmp/maml-gpu-out when OUT is unset). Run from the repository root:
#   bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-${TMPDIR:-/tmp}/maml-gpu-out}
mkdir -p "$OUT"
BIN=${TMPDIR:-/tmp}/maml_gpu_check
ARCH=${MAML_GPU_ARCH:-sm_90}
stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/machine.txt"
{ nvcc --version | tail -1; command -v node && node --version; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'; } 2>&1 | tee -a "$OUT/machine.txt"

stage "build gpu_check (nvcc -arch=$ARCH)"
build_ok=0
if timeout 240 nvcc -std=c++17 -O3 -arch="$ARCH" -Xptxas -v -I native bench/gpu/gpu_check.cu native/cuda/meta_kernels.cu \
    native/cuda/cuda_learner.cu native/cpu/thread_pool.cc -lpthread -o "$BIN" > "$OUT/build.log" 2>&1; then
  build_ok=1
  echo "built $BIN"
  grep -A2 "meta_tasks_kernel" "$OUT/build.log" | grep -E "registers|stack" | head -4
else
  echo "BUILD FAILED (exit $?): tail of $OUT/build.log"; tail -20 "$OUT/build.log"
fi

parity="not run"
if [ $build_ok = 1 ]; then
  stage "parity: CUDA vs the float64 reference (gpu_check parity)"
  timeout 180 "$BIN" parity 2>&1 | tee "$OUT/parity.txt"
  if [ "${PIPESTATUS[0]}" = 0 ]; then parity="gpu_check passed"; else parity="gpu_check FAILED"; fi
  grep -c "^ok" "$OUT/parity.txt" | sed 's/^/checks ok: /'
fi

# (it rebuilds build/ and build-cuda/ in this tree: only where a GPU answers)
if [ -z "${MAML_GPU_SKIP_NODE:-}" ] && nvidia-smi -L > /dev/null 2>&1 && command -v node > /dev/null && [ -d node_modules/cmake-js ]; then
  stage "node: both addons (node-gyp, cmake-js) and the vitest suites"
  if timeout 300 node scripts/build-native.mjs --force > "$OUT/node-build.log" 2>&1; then
    timeout 120 npx vitest run test/cuda-parity.test.ts test/cuda-host.test.ts test/loader.test.ts 2>&1 | tail -15 | tee "$OUT/vitest.txt"
    parity="$parity; vitest: $(grep -E 'Tests' "$OUT/vitest.txt" | tr -s ' ' | head -1)"
  else
    echo "addon build FAILED: tail of $OUT/node-build.log"; tail -10 "$OUT/node-build.log"
  fi
else
  stage "node: skipped (MAML_GPU_SKIP_NODE, no GPU, or no node or node_modules/cmake-js here); gpu_check covers parity"
fi

if [ $build_ok = 1 ]; then
  stage "timing: maml-native (gpu_check bench)"
  timeout 150 "$BIN" bench "$OUT/ours.json" 2>&1 | tee "$OUT/ours.txt"
fi

stage "timing: PyTorch on CUDA (bench/baselines/pytorch_maml_gpu.py)"
PYTHONUNBUFFERED=1 timeout 200 python3 bench/baselines/pytorch_maml_gpu.py "$OUT/torch.json" 2>&1 | tee "$OUT/torch.txt"

if [ $build_ok = 1 ] && command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    stage "compute-sanitizer --tool $tool (small cases)"
    timeout 150 compute-sanitizer --tool $tool --error-exitcode 3 "$BIN" sanitize > "$OUT/sanitize-$tool.txt" 2>&1
    echo "exit $? (0 clean, 3 errors found, 124 timed out); last lines:"; tail -4 "$OUT/sanitize-$tool.txt"
  done
fi

stage "table"
python3 bench/gpu/gpu_table.py "$OUT/ours.json" "$OUT/torch.json" "$parity" 2>&1 | tee "$OUT/table.md"
