#!/usr/bin/env bash
# Development build: compiles samfast._C into build/dev and copies it into python/samfast/,
# so `PYTHONPATH=python pytest` runs the working tree without reinstalling. Serialised with a lock
# (several shells may build at once). CUDA is off unless SAMFAST_DEV_CUDA=1 (then archs
# SAMFAST_CUDA_ARCHS, default 90). SAMFAST_DEV_NOCOPY=1 builds without copying.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p build
cuda=OFF; [ "${SAMFAST_DEV_CUDA:-0}" = 1 ] && cuda=ON
bdir=build/dev-cuda$cuda
exec 9>build/.lock-dev-cuda$cuda
flock 9
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $PY)" \
  -DSAMFAST_WITH_CUDA=$cuda -DSAMFAST_CUDA_ARCHS="${SAMFAST_CUDA_ARCHS:-90}" >/dev/null
cmake --build "$bdir" -j"${JOBS:-2}"
if [ "${SAMFAST_DEV_NOCOPY:-0}" = 1 ]; then echo "built $(ls "$bdir"/_C*.so) (not copied)"; exit 0; fi
so=$(ls "$bdir"/_C*.so); cp "$so" python/samfast/.tmp_C.so && mv -f python/samfast/.tmp_C.so "python/samfast/$(basename "$so")"  # atomic: running tests keep the old file
echo "built $(ls python/samfast/_C*.so)"
