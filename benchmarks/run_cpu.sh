#!/usr/bin/env bash
# All CPU benchmarks, one after the other on a quiet machine; JSON to benchmarks/results/<date>-cpu/.
# Usage: benchmarks/run_cpu.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/$(date -u +%Y-%m-%d)-cpu
mkdir -p "$out"
q=""; [ "${1:-}" = "--quick" ] && q=1
lscpu > "$out/lscpu.txt" || true
python benchmarks/bench_decoder.py --repeats ${q:+5}${q:-20} --encoder-repeats ${q:+1}${q:-3} --json "$out/decoder.json" | tee "$out/decoder.txt"
python benchmarks/bench_attention_kernel.py --repeats ${q:+3}${q:-10} --json "$out/attention.json" | tee "$out/attention.txt"
python benchmarks/bench_mask_head_kernel.py --repeats ${q:+3}${q:-10} --json "$out/mask_head.json" | tee "$out/mask_head.txt"
python benchmarks/bench_onnx.py --repeats ${q:+5}${q:-20} --image 768x1024 --json "$out/onnx.json" | tee "$out/onnx.txt"
python benchmarks/bench_amg.py --json "$out/amg.json" | tee "$out/amg.txt"
