#!/usr/bin/env bash
# bench/gpu/source-hash.sh: one hash of every source bench/gpu/gpu_check is built from, so that
# bench/gpu.sh can use the gpu_check that pack-node.mjs built here (same nvcc, same sources)
# instead of spending device time on the build. Run from the repository root.
set -eu
find bench/gpu/gpu_check.cu native/cuda native/core native/cpu -type f \( -name '*.cu' -o -name '*.cc' -o -name '*.hpp' -o -name '*.h' \) |
  LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16
