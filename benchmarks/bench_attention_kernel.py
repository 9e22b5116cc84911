"""Micro-benchmark: samfast CPU rel-pos attention kernel vs the materialised PyTorch reference.

llm.c style: check the kernel against the reference first, then time (median of repeats) and print
ms and GFLOP/s (4 * Nq * Nk * head_dim flops per head per block; windowed blocks count the padded
window, as the reference computes it). Shapes: SAM vit_b at 1024x1024 (64x64 tokens, 12 heads,
head_dim 64): the global block and the 14x14-window block.

    PYTHONPATH=python python benchmarks/bench_attention_kernel.py [--json out.json] [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import torch

from samfast import _C, ops

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


def bench(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None, help="write results to this file")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES))
    ap.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
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
            ref = ops.rel_pos_attention_reference(qkv, bias, rh, rw, nh, ws)
            scale = ref64.abs().max().item()
            err_k = (out.double() - ref64).abs().max().item() / scale
            err_r = (ref.double() - ref64).abs().max().item() / scale
            tol = 1e-5 if dtype == torch.float32 else 4 * err_r + 1e-3
            status = "OK" if err_k <= tol else "MISMATCH"
            t_k = bench(lambda: ops._rel_pos_attention_op(qkv, bias, rh, rw, nh, ws), args.repeats)
            t_r = bench(lambda: ops.rel_pos_attention_reference(qkv, bias, rh, rw, nh, ws), max(3, args.repeats // 2))
            row = dict(shape=name, dtype=dname, B=B, H=H, W=W, heads=nh, head_dim=hd, window=ws,
                       kernel_ms=t_k * 1e3, ref_ms=t_r * 1e3, kernel_gflops=fl / t_k / 1e9,
                       ref_gflops=fl / t_r / 1e9, speedup=t_r / t_k, err_kernel=err_k, err_ref=err_r, check=status)
            results.append(row)
            print(f"{name:16s} {dname:9s} kernel {t_k * 1e3:9.2f} ms {fl / t_k / 1e9:7.1f} GFLOP/s | "
                  f"ref {t_r * 1e3:9.2f} ms {fl / t_r / 1e9:7.1f} GFLOP/s | x{t_r / t_k:5.2f} | "
                  f"err {err_k:.1e} (ref {err_r:.1e}) {status}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(build_info={k: v for k, v in info.items()}, results=results), f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
