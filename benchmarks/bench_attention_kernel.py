"""Micro-benchmark: samfast CPU rel-pos attention kernel vs the materialised PyTorch reference.

llm.c style: check the kernel against the reference first, then time (median of repeats) and print
ms and GFLOP/s (4 * Nq * Nk * head_dim flops per head per block; windowed blocks count the padded
window, as the reference computes it), from wall time and from process CPU time (GFLOP per
core-second, the robust number on a shared machine). Shapes: SAM vit_b at 1024x1024 (64x64 tokens, 12 heads,
head_dim 64): the global block and the 14x14-window block.

    PYTHONPATH=python python benchmarks/bench_attention_kernel.py [--json out.json] [--repeats 10]
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from samfast import _C, ops

from bench_common import median_wall_cpu_s, write_json

SHAPES = {  # name: (B, H, W, num_heads, head_dim, window_size)
    "vit_b_global": (1, 64, 64, 12, 64, 0),
    "vit_b_window14": (1, 64, 64, 12, 64, 14),
}


def make_inputs(B, H, W, nh, hd, ws, dtype):
    g = torch.Generator().manual_seed(0)
    C = nh * hd
    sh, sw = (ws, ws) if ws else (H, W)
    qkv = torch.randn(B, H, W, 3 * C, generator=g)
    bias = torch.randn(3 * C, generator=g) * 0.5
    rh = torch.randn(sh, sh, hd, generator=g) * 0.1
    rw = torch.randn(sw, sw, hd, generator=g) * 0.1
    return [t.to(dtype) for t in (qkv, bias, rh, rw)]


def flops(B, H, W, nh, hd, ws):
    if ws == 0:
        n = H * W
        return 4.0 * B * nh * n * n * hd
    nwin = math.ceil(H / ws) * math.ceil(W / ws)
    n = ws * ws
    return 4.0 * B * nwin * nh * n * n * hd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None, help="write results to this file")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    ap.add_argument("--native-bf16-ref", action="store_true",
                    help="bf16: time torch's reference in bf16 (CPU bf16 bmm without AVX512-BF16 takes minutes); "
                         "default times the reference on fp32-upcast inputs")
    args = ap.parse_args()
    info = _C.build_info()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, omp {info.get('omp_max_threads')}, "
          f"simd {info['simd_runtime']} (SAMFAST_SIMD={os.environ.get('SAMFAST_SIMD', 'unset')})")
    results = []
    for name in args.shapes:
        B, H, W, nh, hd, ws = SHAPES[name]
        fl = flops(B, H, W, nh, hd, ws)
        for dname in args.dtypes:
            dtype = getattr(torch, dname)
            qkv, bias, rh, rw = make_inputs(B, H, W, nh, hd, ws, dtype)
            # correctness: vs float64 reference; report the reference-in-dtype error alongside
            ref64 = ops.rel_pos_attention_reference(qkv.double(), bias.double(), rh.double(), rw.double(), nh, ws)
            out = ops._rel_pos_attention_op(qkv, bias, rh, rw, nh, ws)
            native = dtype == torch.float32 or args.native_bf16_ref
            ref_args = (qkv, bias, rh, rw) if native else tuple(t.float() for t in (qkv, bias, rh, rw))

            def run_ref():
                return ops.rel_pos_attention_reference(*ref_args, nh, ws).to(dtype)

            c0, t0 = time.process_time(), time.perf_counter()
            ref = run_ref()
            t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
            scale = ref64.abs().max().item()
            err_k = (out.double() - ref64).abs().max().item() / scale
            err_r = (ref.double() - ref64).abs().max().item() / scale
            # bf16: fp32 math + one final rounding, so within the reference's error (+ half a bf16 ulp)
            tol = 1e-5 if dtype == torch.float32 else 2 * err_r + 4e-3
            status = "OK" if err_k <= tol else "MISMATCH"
            t_k, c_k = median_wall_cpu_s(lambda: ops._rel_pos_attention_op(qkv, bias, rh, rw, nh, ws), args.repeats)
            if t_first > 5.0:  # torch's CPU bf16 bmm can take minutes: keep the single timed run
                t_r, c_r = t_first, c_first
            else:
                t_r, c_r = median_wall_cpu_s(run_ref, max(3, args.repeats // 2), warmup=1)
            row = dict(shape=name, dtype=dname, ref_kind="native" if native else "fp32-upcast", B=B, H=H, W=W, heads=nh, head_dim=hd, window=ws,
                       kernel_ms=t_k * 1e3, ref_ms=t_r * 1e3, kernel_gflops=fl / t_k / 1e9,
                       ref_gflops=fl / t_r / 1e9, speedup=t_r / t_k, kernel_cpu_ms=c_k * 1e3, ref_cpu_ms=c_r * 1e3,
                       kernel_gflops_per_core=fl / c_k / 1e9, ref_gflops_per_core=fl / c_r / 1e9,
                       err_kernel=err_k, err_ref=err_r, check=status)
            results.append(row)
            # wall-clock numbers, then CPU-time ones (GFLOP per core-second: robust on a shared machine)
            print(f"{name:15s} {dname:8s}{'' if native else '*'} kernel {t_k * 1e3:8.1f} ms {fl / t_k / 1e9:6.1f} GFLOP/s | "
                  f"ref {t_r * 1e3:8.1f} ms {fl / t_r / 1e9:6.1f} GFLOP/s | x{t_r / t_k:5.2f} || cpu: kernel "
                  f"{fl / c_k / 1e9:5.1f} ref {fl / c_r / 1e9:5.1f} GFLOP/core-s x{c_r / c_k:5.2f} | "
                  f"err {err_k:.1e} (ref {err_r:.1e}) {status}")
    write_json(args.json, dict(build_info={k: v for k, v in info.items()}, results=results), indent=2, announce=True)
    if any(r["ref_kind"] != "native" for r in results):
        print("* bf16 rows: reference timed on fp32-upcast inputs (--native-bf16-ref for torch's bf16 path)")


if __name__ == "__main__":
    main()
