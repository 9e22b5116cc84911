#!/usr/bin/env bash
# One command for a lent GPU machine (see /work/.library/device/README.md): build + install samfast
# for sm_90, run the CUDA tests, the same tests under compute-sanitizer memcheck and racecheck, then
# the CUDA benchmarks. Results (logs, JSON, markdown table) go to $OUT (or ./out when unset).
#
#   benchmarks/device_run.sh                 # all steps: build test memcheck racecheck bench
#   benchmarks/device_run.sh build test      # a subset, in the order given
#
# The device image has torch, pybind11, scikit-build-core, pytest and compute-sanitizer but no network:
# the install uses --no-build-isolation --no-deps. Optional wheels (e.g. segment-anything, for the
# official-encoder baselines) can be carried in .whl/ (name `.whl` in the call's `carry`).
# One device command may run 10 minutes; all five steps can take longer (each has its own timeout). Then
# split across calls on the still-warm machine (the install survives between calls while it is warm):
#   run 1: benchmarks/device_run.sh build test    run 2: ... memcheck racecheck    run 3: ... bench
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(build test memcheck racecheck bench)
status=0
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

sanitizer() {
  command -v compute-sanitizer 2>/dev/null && return
  for c in /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
    [ -x "$c" ] && { echo "$c"; return; }
  done
}

run_step() {
  case "$1" in
    build)
      log "build: pip install (SAMFAST_CUDA_ARCHS=90, SAMFAST_REQUIRE_CUDA=ON)"
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$OUT/summary.txt"
      $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
        2>&1 | tee -a "$OUT/summary.txt"
      if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --no-cache-dir .whl/*.whl 2>&1 | tail -3
      fi
      SAMFAST_CUDA_ARCHS=90 SAMFAST_REQUIRE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 timeout 420 \
        $PY -m pip install --no-build-isolation --no-deps -v . >"$OUT/build.log" 2>&1
      local rc=$?
      tail -5 "$OUT/build.log"
      grep -iE "warning|error" "$OUT/build.log" | grep -v -- "-W" | head -20
      (cd /tmp && $PY -c "import samfast, samfast._C as C; print('installed', samfast.__file__, C.build_info()['cuda_archs'], C.cuda_compiled())") \
        2>&1 | tee -a "$OUT/summary.txt"
      log "build rc=$rc"
      [ $rc -eq 0 ] || { status=1; return 1; } ;;
    test)
      log "pytest -m cuda (all cuda-marked tests; tests/test_cuda_kernels.py holds this op family's)"
      timeout 360 $PY -m pytest -m cuda tests/ -q -rs --durations=10 -p no:cacheprovider \
        --continue-on-collection-errors >"$OUT/pytest_cuda.log" 2>&1
      local rc=$?
      tail -25 "$OUT/pytest_cuda.log"
      log "pytest rc=$rc"
      [ $rc -eq 0 ] || status=1 ;;
    memcheck|racecheck)
      local cs; cs=$(sanitizer)
      if [ -z "$cs" ]; then log "$1: compute-sanitizer not found"; status=1; return; fi
      log "$1 ($cs), quick test set, no caching allocator"
      # Without the caching allocator every tensor is its own cudaMalloc, so memcheck sees out-of-bounds
      # accesses that would otherwise land inside a pooled block.
      SAMFAST_CUDA_TEST_QUICK=1 PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 420 \
        "$cs" --tool "$1" --error-exitcode 99 --print-limit 20 \
        $PY -m pytest -m cuda tests/test_cuda_kernels.py -q -x -p no:cacheprovider -k "not bad_inputs" \
        >"$OUT/$1.log" 2>&1
      local rc=$?
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|hazard|passed|failed" "$OUT/$1.log" | tail -15
      log "$1 rc=$rc"
      [ $rc -eq 0 ] || status=1 ;;
    bench)
      log "bench_cuda.py"
      timeout 420 $PY benchmarks/bench_cuda.py --out "$OUT" 2>&1 | tee "$OUT/bench.log" | tail -60
      local rc=${PIPESTATUS[0]}
      log "bench rc=$rc"
      [ $rc -eq 0 ] || status=1 ;;
    *) log "unknown step $1"; status=1 ;;
  esac
}

for s in "${STEPS[@]}"; do
  run_step "$s" || { [ "$s" = build ] && break; }
done
log "done, status=$status (files in $OUT)"
exit $status
