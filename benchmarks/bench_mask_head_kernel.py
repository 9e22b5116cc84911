"""Benchmark (llm.c style): SAM mask-decoder output stage on CPU, kernels vs PyTorch reference.

1. fused mask head (_C.mask_head_cpu via samfast.ops._mask_head_op) at SAM sizes
   (src [B, 64, 64, 256] -> [B, M, 256, 256]); B = 1 and 64, M = 1 and 3.
2. fused mask postprocessing 256 -> 1024 -> crop 768x1024 -> 768x1024 (M = 3), logits and bool.
Every config is first checked against the reference, then timed (median of --repeats).

    PYTHONPATH=python python benchmarks/bench_mask_head_kernel.py [--repeats 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

import samfast.ops as ops
from samfast import _C

from bench_common import time_calls, write_json

C, C1, C2, H = 256, 64, 32, 64


MIN_TIMES = {}  # fn id -> min wall ms (reported next to the median; the CPU may be shared)
CPU_TIMES = {}  # fn id -> median process CPU ms per call (all threads; robust to other load)


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time in ms (min wall -> MIN_TIMES[id(fn)], median CPU time -> CPU_TIMES[id(fn)])."""
    ts, cs = time_calls(fn, repeats, warmup)
    MIN_TIMES[id(fn)] = min(ts) * 1e3
    CPU_TIMES[id(fn)] = statistics.median(cs) * 1e3
    return statistics.median(ts) * 1e3


def mask_head_args(B, M, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, sc=1.0, sh=0.0: (torch.randn(*s, generator=g) * sc + sh).to(dtype)  # noqa: E731
    return [r(B, H, H, C), r(C, C1, 2, 2, sc=C ** -0.5), r(C1, sc=0.5), r(C1, sc=0.3, sh=1.0), r(C1, sc=0.3),
            r(C1, C2, 2, 2, sc=C1 ** -0.5), r(C2, sc=0.5), r(B, M, C2, sc=0.5)]


def mask_head_flops(B, M):
    px = B * H * H
    return 2 * px * (C * 4 * C1 + 4 * C1 * 4 * C2 + 16 * C2 * M)


def bench_mask_head(B, M, dtype, repeats, results):
    args = mask_head_args(B, M, dtype)
    # check: B=1 against the float64 reference; B=64 on a few batch items (the reference is slow)
    idx = slice(None) if B == 1 else slice(0, 2)
    sub = [t[idx] if i in (0, 7) else t for i, t in enumerate(args)]
    ref = ops.mask_head_reference(*[t.double() for t in sub])
    out = ops._mask_head_op(*args)[idx]
    err = float((out.double() - ref).abs().max() / ref.abs().max())
    tol = 1e-5 if dtype == torch.float32 else 2 ** -7
    assert err < tol, f"mask head B={B} M={M} {dtype}: rel err {err:.2e}"
    reps = repeats if B == 1 else max(2, repeats // 5)
    fn = lambda: ops._mask_head_op(*args)  # noqa: E731
    t_k = timeit(fn, reps, warmup=1 if B > 1 else 2)
    t_min, t_cpu = MIN_TIMES[id(fn)], CPU_TIMES[id(fn)]
    t_r = timeit(lambda: ops.mask_head_reference(*args), max(2, reps // 2), warmup=1)
    gf = mask_head_flops(B, M) / 1e9
    name = f"mask_head B={B} M={M} {str(dtype).replace('torch.', '')}"
    print(f"{name:30s} kernel {t_k:8.2f} ms (min {t_min:7.2f}, cpu {t_cpu:7.2f}) {gf / t_k * 1e3:6.1f} GFLOP/s | "
          f"reference {t_r:8.2f} ms "
          f"{gf / t_r * 1e3:7.1f} GFLOP/s | x{t_r / t_k:5.1f} | err {err:.1e}")
    results.append(dict(op="mask_head", B=B, M=M, dtype=str(dtype), kernel_ms=t_k, kernel_min_ms=t_min,
                        kernel_cpu_ms=t_cpu, reference_ms=t_r, gflop=gf, kernel_gflops=gf / t_k * 1e3, speedup=t_r / t_k, rel_err=err))


def bench_postprocess(binarize, dtype, repeats, results):
    B, M, img, inp, orig = 1, 3, 1024, (768, 1024), (768, 1024)
    g = torch.Generator().manual_seed(1)
    m = (torch.randn(B, M, 256, 256, generator=g) * 4).to(dtype)
    thr = 0.0 if binarize else None
    ref = ops.postprocess_masks_reference(m.double(), img, inp, orig, None)
    run = lambda: ops._postprocess_masks_op(m, img, *inp, *orig, 0.0, binarize)  # noqa: E731
    out = run()
    if binarize:
        err = 1.0 - (out == (ref > 0)).double().mean().item()
        assert err < 1e-4, f"postprocess: {err:.2e} of binary pixels differ"
    else:
        err = float((out.double() - ref).abs().max() / ref.abs().max())
        assert err < (1e-5 if dtype == torch.float32 else 2 ** -7), f"postprocess rel err {err:.2e}"
    t_k = timeit(run, repeats)
    t_min, t_cpu = MIN_TIMES[id(run)], CPU_TIMES[id(run)]
    t_r = timeit(lambda: ops.postprocess_masks_reference(m, img, inp, orig, thr), max(2, repeats // 2))
    nbytes = m.numel() * m.element_size() + out.numel() * out.element_size()
    name = f"postprocess M={M} -> {'bool' if binarize else str(dtype).replace('torch.', '')}"
    print(f"{name:30s} kernel {t_k:8.2f} ms (min {t_min:7.2f}, cpu {t_cpu:7.2f}) {nbytes / t_k / 1e6:6.2f} GB/s    | "
          f"reference "
          f"{t_r:8.2f} ms                | x{t_r / t_k:5.1f} | err {err:.1e}")
    results.append(dict(op="postprocess_masks", M=M, binarize=binarize, dtype=str(dtype), kernel_ms=t_k,
                        kernel_min_ms=t_min, kernel_cpu_ms=t_cpu, reference_ms=t_r, gb_per_s=nbytes / t_k / 1e6, speedup=t_r / t_k, err=err))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-b64", action="store_true", help="skip the B=64 mask head configs")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16")
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads for the kernels (0: default)")
    ap.add_argument("--json", help="write results here")
    a = ap.parse_args()
    if a.threads > 0:
        _C.set_num_threads(a.threads)
    info = _C.build_info()
    print(f"samfast {info['simd_runtime']} (SAMFAST_SIMD={os.environ.get('SAMFAST_SIMD', 'unset')}), "
          f"omp threads {a.threads or info.get('omp_max_threads')}, torch threads {torch.get_num_threads()}")
    results = []
    dtypes = [torch.float32] + ([torch.bfloat16] if a.bf16 else [])
    for dtype in dtypes:
        for B, M in [(1, 1), (1, 3)] + ([] if a.no_b64 else [(64, 1), (64, 3)]):
            bench_mask_head(B, M, dtype, a.repeats, results)
    for dtype in dtypes:
        for binarize in (False, True):
            bench_postprocess(binarize, dtype, a.repeats, results)
    write_json(a.json, dict(build=info, results=results), indent=1, announce=True)


if __name__ == "__main__":
    main()
