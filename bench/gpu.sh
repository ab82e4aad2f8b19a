#!/usr/bin/env bash
# bench/gpu.sh: the whole GPU check in one call on the GPU machine (see /work/.library/device):
#   1. machine facts (nvidia-smi, nvcc, node, torch)
#   2. build bench/gpu/gpu_check (nvcc; no Node needed; falls back to .gpunode/gpu_check, built
#      here by bench/gpu/pack-node.mjs) and run its parity tests against the float64 core
#   3. timing of the issue's cases: maml-native (gpu_check bench; also the build of an earlier commit
#      where pack-node.mjs --prev packed one), then PyTorch on the same GPU
#   4. the Node.js suites on the GPU with the real vitest (cuda-parity, loader, learner-dispose,
#      cuda-backend): from .gpunode/ (node, pruned node_modules and both addons, packed by
#      `node bench/gpu/pack-node.mjs`) where the machine has no Node; else, where node and
#      node_modules/cmake-js are there, after rebuilding both addons
#   5. compute-sanitizer memcheck and racecheck on a few small cases, and ncu on the fused kernel
#      of each bench case (where the tools work)
#   6. the table, last
# Each stage prints "=== stage: ..." and a failing stage does not stop the others. Stages share a
# time budget (MAML_GPU_BUDGET_S, default 500 s: the device call's timeout_s should be a little
# above it); a stage that would not fit is skipped and says so. Output goes to $OUT (or
# /tmp/maml-gpu-out when OUT is unset), at most 8 files: log.txt (everything printed), build.log,
# vitest.txt, ours.json, torch.json, node-step.json, tools.txt (sanitizers, ncu), table.md (node-build.log instead
# of node-step.json where the addons are rebuilt there). From the repository
# root:
#   node bench/gpu/pack-node.mjs      # here, once, if the GPU machine has no Node.js
#   bash bench/gpu.sh                 # there; device call: carry [".gpunode"], timeout_s 560
# MAML_GPU_STAGES=bench,source bash bench/gpu.sh   # only some stages (see want() below)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-${TMPDIR:-/tmp}/maml-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
BIN=${TMPDIR:-/tmp}/maml_gpu_check
ARCH=${MAML_GPU_ARCH:-sm_90}
BUDGET=${MAML_GPU_BUDGET_S:-500}
START=$SECONDS
stage() { echo; echo "=== $1 ($(date +%T), ${SECONDS}s)"; }
# limit WANT [MIN]: seconds for the next stage: WANT, or what is left of the budget less 15 s for
# the table; prints 0 (skip) when under MIN (default 20)
limit() {
  local left=$((BUDGET - (SECONDS - START) - 15))
  local t=$(($1 < left ? $1 : left))
  if [ "$t" -lt "${2:-20}" ]; then echo 0; else echo "$t"; fi
}
skipped() { echo "(skipped: under ${2:-20} s of the ${BUDGET}-s budget left for $1)"; }
# want STAGE: whether MAML_GPU_STAGES (a comma-separated list of parity, bench, prev, torch,
# node, sanitize, ncu, source; default all) names it. The build and the table always run.
want() { [ "${MAML_GPU_STAGES:-all}" = all ] || [[ ",${MAML_GPU_STAGES}," == *",$1,"* ]]; }

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv 2>&1
nvcc --version 2>&1 | tail -1
command -v node && node --version
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())' 2>&1
grep -m1 "model name" /proc/cpuinfo; nproc; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")

build_ok=0
if [ -x .gpunode/gpu_check ] && [ "$(cat .gpunode/gpu_check.sources 2>/dev/null)" = "$(bash bench/gpu/source-hash.sh)" ] &&
    [ "$ARCH" = sm_90 ] && [ "${MAML_GPU_BUILD:-}" != 1 ]; then
  stage "gpu_check: the build packed by pack-node.mjs (same sources, same nvcc; MAML_GPU_BUILD=1 builds here)"
  cp .gpunode/gpu_check "$BIN" && build_ok=1
  echo "prebuilt gpu_check, sources $(cat .gpunode/gpu_check.sources)" > "$OUT/build.log"
elif stage "build gpu_check (nvcc -arch=$ARCH)" && timeout "$(limit 150)" nvcc -std=c++17 -O3 -arch="$ARCH" -Xptxas -v -I native bench/gpu/gpu_check.cu native/cuda/meta_kernels.cu \
    native/cuda/cuda_learner.cu native/cpu/thread_pool.cc -lpthread -o "$BIN" > "$OUT/build.log" 2>&1; then
  build_ok=1
  echo "built $BIN"
  grep -E "registers|stack" "$OUT/build.log" | head -8
elif [ -x .gpunode/gpu_check ]; then
  echo "BUILD FAILED here (tail of build.log below): using the gpu_check built by pack-node.mjs"
  tail -8 "$OUT/build.log"
  cp .gpunode/gpu_check "$BIN" && build_ok=1
else
  echo "BUILD FAILED: tail of build.log"; tail -20 "$OUT/build.log"
fi

parity="gpu_check: not run"
if [ $build_ok = 1 ] && want parity; then
  stage "parity: CUDA vs the float64 reference (gpu_check parity)"
  t=$(limit 150)
  if [ "$t" = 0 ]; then skipped parity; else
    timeout "$t" "$BIN" parity
    rc=$?
    if [ $rc = 0 ]; then parity="gpu_check passed"; else parity="gpu_check FAILED (exit $rc)"; fi
    echo "$parity"
  fi
  # variants 3 and 4 (the cluster kernel: its cases are the ones printed with "cluster memory")
  timeout 30 "$BIN" clusters
  for v in 4 3; do
    stage "parity with kernel variant $v (MAML_CUDA_KERNEL=$v)"
    t=$(limit 150)
    if [ "$t" = 0 ]; then skipped "parity, variant $v"; continue; fi
    MAML_CUDA_KERNEL=$v timeout "$t" "$BIN" parity | grep -E "^FAIL|failure|cluster memory" | tail -16
    rc=${PIPESTATUS[0]}
    if [ $rc = 0 ]; then parity="$parity; variant $v passed"; else parity="$parity; variant $v FAILED (exit $rc)"; fi
  done
fi

if [ $build_ok = 1 ] && want bench; then
  stage "timing: maml-native (gpu_check bench)"
  t=$(limit 120 40)
  if [ "$t" = 0 ]; then skipped "timing" 40; else timeout "$t" "$BIN" bench "$OUT/ours.json"; fi
fi

if [ $build_ok = 1 ] && [ -x .gpunode/gpu_check_prev ] && want prev; then
  stage "timing: the previous build, commit $(cat .gpunode/gpu_check_prev.commit 2>/dev/null) (.gpunode/gpu_check_prev), same run"
  t=$(limit 60 40)
  if [ "$t" = 0 ]; then skipped "the previous build" 40; else timeout "$t" .gpunode/gpu_check_prev bench /tmp/maml-prev.json; fi
fi

if want torch; then
  stage "timing: PyTorch on CUDA (bench/baselines/pytorch_maml_gpu.py)"
  t=$(limit 150 40)
  if [ "$t" = 0 ]; then skipped "PyTorch" 40; else PYTHONUNBUFFERED=1 timeout "$t" python3 bench/baselines/pytorch_maml_gpu.py "$OUT/torch.json"; fi
fi

# The Node.js suites. NODE is the node binary to use; node_modules must hold vitest.
NODE=""
VITEST_FILES="test/cuda-parity.test.ts test/loader.test.ts test/learner-dispose.test.ts test/cuda-backend.test.ts"
if ! want node; then
  stage "node: not asked for (MAML_GPU_STAGES)"
elif [ -z "${MAML_GPU_SKIP_NODE:-}" ] && [ -f .gpunode/node.xz ] && [ -f .gpunode/modules.tar.xz ]; then
  stage "node: unpack .gpunode (node, node_modules, addons built on the CPU machine)"
  mkdir -p /tmp/gpunode build/Release build-cuda/Release
  if xz -dc .gpunode/node.xz > /tmp/gpunode/node && chmod +x /tmp/gpunode/node && tar -xJf .gpunode/modules.tar.xz \
      && cp .gpunode/maml_native.node build/Release/ && cp .gpunode/maml_cuda.node build-cuda/Release/; then
    NODE=/tmp/gpunode/node
    export PATH="/tmp/gpunode:$PATH"
    "$NODE" --version
  else
    echo "unpacking .gpunode FAILED"
  fi
elif [ -z "${MAML_GPU_SKIP_NODE:-}" ] && command -v node > /dev/null && [ -d node_modules/cmake-js ]; then
  stage "node: rebuild both addons here (node-gyp, cmake-js)"
  t=$(limit 300 120)
  if [ "$t" = 0 ]; then skipped "the addon build" 120
  elif timeout "$t" node scripts/build-native.mjs --force > "$OUT/node-build.log" 2>&1; then NODE=node
  else echo "addon build FAILED: tail of node-build.log"; tail -10 "$OUT/node-build.log"; fi
else
  stage "node: skipped (MAML_GPU_SKIP_NODE, or no .gpunode/ and no node with node_modules here); gpu_check covers parity"
fi
if [ -n "$NODE" ]; then
  stage "node: vitest on the GPU ($VITEST_FILES)"
  t=$(limit 180 40)
  if [ "$t" = 0 ]; then skipped vitest 40; else
    CI=true NO_COLOR=1 FORCE_COLOR=0 timeout "$t" "$NODE" node_modules/vitest/vitest.mjs run --reporter=verbose $VITEST_FILES > "$OUT/vitest.txt" 2>&1
    rc=$?
    grep -E "^ *(×|✗|FAIL)" "$OUT/vitest.txt" | head -30
    grep -cE "^ *✓" "$OUT/vitest.txt" | sed 's/^/tests passed (verbose lines): /'
    tail -7 "$OUT/vitest.txt"
    parity="$parity; vitest (exit $rc): $(grep -E '^ +Tests ' "$OUT/vitest.txt" | tr -s ' ' | head -1)"
  fi
  stage "node: MetaLearner on cuda and cpu from Node.js (bench/gpu/node-step.mjs)"
  t=$(limit 90 30)
  if [ "$t" = 0 ]; then skipped node-step 30; else timeout "$t" "$NODE" bench/gpu/node-step.mjs "$OUT/node-step.json"; fi
fi

# each tool on kernel variants 4 and 3 (their wide-layer paths run in the sanitize cases'
# global-memory case: variant 4 on a cluster), then on the default kernel (clean in session 4)
if [ $build_ok = 1 ] && command -v compute-sanitizer > /dev/null && want sanitize; then
  for run in "memcheck 4" "racecheck 4" "memcheck 3" "racecheck 3" "memcheck 1" "racecheck 1"; do
    set -- $run
    stage "compute-sanitizer --tool $1 (small cases, kernel variant $2)"
    t=$(limit 100 30)
    if [ "$t" = 0 ]; then skipped "$1, variant $2" 30; continue; fi
    echo "=== compute-sanitizer --tool $1, MAML_CUDA_KERNEL=$2" >> "$OUT/tools.txt"
    MAML_CUDA_KERNEL=$2 timeout "$t" compute-sanitizer --tool $1 --error-exitcode 3 "$BIN" sanitize >> "$OUT/tools.txt" 2>&1
    echo "exit $? (0 clean, 3 errors found, 124 timed out); last lines:"; tail -4 "$OUT/tools.txt"
  done
fi

# the kernel variant the ncu stages profile: MAML_GPU_PROFILE_KERNEL, default 4 (variant 1's
# profile is in bench/NOTES.md entry 23; the regex takes the one-block and the cluster kernels)
PROFILE_KERNEL=${MAML_GPU_PROFILE_KERNEL:-4}
if [ $build_ok = 1 ] && command -v ncu > /dev/null; then
  stage "ncu: the fused meta-step kernel of each bench case, variant $PROFILE_KERNEL (2 launches each; --clock-control none)"
  t=$(limit 90 30)
  if ! want ncu; then echo "(not asked for)"
  elif [ "$t" = 0 ]; then skipped ncu 30; else
    echo "=== ncu" >> "$OUT/tools.txt"
    MAML_CUDA_KERNEL=$PROFILE_KERNEL timeout "$t" ncu --clock-control none --kernel-name regex:"meta_(tasks|cluster)_kernel" --launch-count 8 \
      --section SpeedOfLight --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section SourceCounters "$BIN" profile >> "$OUT/tools.txt" 2>&1
    echo "exit $?"
    grep -E "^  meta_(tasks|cluster)_kernel|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Dynamic Shared|Block Size|Grid Size" "$OUT/tools.txt" | tail -48
  fi
  # where the wide net's kernel (the 5th launch of `profile`) stalls, per SASS instruction: the
  # source page of a report, as CSV, appended to tools.txt
  stage "ncu: stall samples per instruction of the wide net's kernel, variant $PROFILE_KERNEL"
  t=$(limit 60 30)
  if ! want source; then echo "(not asked for)"
  elif [ "$t" = 0 ]; then skipped "ncu source" 30; else
    rm -f /tmp/maml-wide.ncu-rep
    MAML_CUDA_KERNEL=$PROFILE_KERNEL timeout "$t" ncu --clock-control none --kernel-name regex:"meta_(tasks|cluster)_kernel" --launch-skip 4 --launch-count 1 \
      --section WarpStateStats --section SourceCounters -o /tmp/maml-wide "$BIN" profile > /dev/null 2>&1
    echo "profile exit $?"
    echo "=== ncu source page (wide kernel, SASS)" >> "$OUT/tools.txt"
    timeout 30 ncu --import /tmp/maml-wide.ncu-rep --page source --csv --print-source sass >> "$OUT/tools.txt" 2>&1
    echo "source page exit $?; $(wc -l < "$OUT/tools.txt") lines in tools.txt"
  fi
fi

stage "table"
python3 bench/gpu/gpu_table.py "$OUT/ours.json" "$OUT/torch.json" "$parity" 2>&1 | tee "$OUT/table.md"
echo "(gpu.sh took ${SECONDS} s)"
