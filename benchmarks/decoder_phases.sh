#!/usr/bin/env bash
# Where one prompt's decoder time goes: builds samfast._C with -DSAMFAST_PHASE_TIMERS=ON into build/phases, runs
# benchmarks/decoder_phases.py on a copy of the package that uses it, and prints the mean time of each phase of
# the whole-decoder C++ call (csrc/cpu/cached_decoder_kernel.cpp; timers in csrc/cpu/phase_timer.h).
# Usage: benchmarks/decoder_phases.sh [decoder_phases.py arguments]   (needs the dev requirements: cmake, ninja,
# pybind11, segment-anything)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
cmake -S . -B build/phases -G Ninja -DCMAKE_BUILD_TYPE=Release -DSAMFAST_PHASE_TIMERS=ON -DSAMFAST_WITH_CUDA=OFF \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $PY)" >/dev/null
cmake --build build/phases -j"${JOBS:-2}" >/dev/null
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
cp -r python/samfast "$pkg/"
rm -f "$pkg"/samfast/_C*.so
cp build/phases/_C*.so "$pkg/samfast/"
PYTHONPATH="$pkg" $PY benchmarks/decoder_phases.py "$@"
