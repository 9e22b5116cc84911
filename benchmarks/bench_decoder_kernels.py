"""Benchmark (llm.c style): the decoder's cross-attention kernels on CPU, per SIMD path, vs PyTorch.

1. token->image attention (ops.token_to_image_attention): Q = 8 heads x 7 tokens, N = 4096 image tokens,
   C = 256, keys x + pe; B = 1 and 64 prompts.
2. image->token attention + residual + LayerNorm (ops.image_to_token_attention), layer-1 shape
   (q = x + pe, Cq = 256) and layer-0 shape (cached q, Cq = 128, shared residual).
Each config is checked against the float64 reference, then timed (median of --repeats) on every SIMD
level this CPU has (SAMFAST_SIMD caps it) and with the PyTorch reference; prints ms and GFLOP/s.

    PYTHONPATH=python python benchmarks/bench_decoder_kernels.py [--repeats 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import os

import torch

import samfast.ops as ops
from samfast import _C

from bench_common import median_ms, write_json

N, C, H, T = 4096, 256, 8, 7


def rel(a, b) -> float:
    return float((a.double() - b).abs().max() / b.abs().max())


def simd_levels():
    f = _C.cpu_features()
    levels = ["baseline"]
    if f.get("avx2"):
        levels.append("avx2")
    if f.get("avx512f"):
        levels.append("avx512")
    return levels


def cases(B, g):
    r = lambda *s, sc=1.0: torch.randn(*s, generator=g) * sc  # noqa: E731
    x, pe = r(B, N, C), r(N, C)
    t2i = ("token->image", (r(B, H * T, C, sc=0.05), x, pe), 2 * 2 * B * H * T * N * C,
           ops.token_to_image_attention, ops.token_to_image_attention_reference)
    common = (r(B, H * T, C, sc=0.1), r(C), r(C, sc=0.2) + 1, r(C, sc=0.2))  # r, out_bias, ln_w, ln_b
    i2t1 = ("image->token L1", (x, pe, r(B, C, H * T, sc=0.05), r(B, H * T), common[0], common[1], x, common[2],
                                common[3], 1e-5, H), 2 * B * N * H * T * (C + C),
            ops.image_to_token_attention, ops.image_to_token_attention_reference)
    q0 = r(1, N, 128)
    i2t0 = ("image->token L0", (q0, None, r(B, 128, H * T, sc=0.1), torch.zeros(B, H * T), common[0], common[1],
                                x[:1], common[2], common[3], 1e-5, H), 2 * B * N * H * T * (128 + C),
            ops.image_to_token_attention, ops.image_to_token_attention_reference)
    return [t2i, i2t1, i2t0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    results = {"threads": torch.get_num_threads(), "cpu": _C.cpu_features(), "rows": []}
    old = os.environ.get("SAMFAST_SIMD")
    for B in (1, 64):
        for name, a, flops, fn, ref_fn in cases(B, g):
            k = 2 if B > 1 else None  # check on a slice of the batch (the float64 reference is slow)
            a64 = [t.double()[:k] if torch.is_tensor(t) and t.dim() >= 2 and t.shape[0] == B else
                   (t.double() if torch.is_tensor(t) else t) for t in a]
            ref = ref_fn(*a64)
            row = {"kernel": name, "B": B, "gflop": flops / 1e9}
            for level in simd_levels():
                os.environ["SAMFAST_SIMD"] = level
                out = fn(*a)
                row[f"{level}_rel_err"] = rel(out[:k] if k else out, ref)
                ms = median_ms(lambda: fn(*a), args.repeats)
                row[f"{level}_ms"], row[f"{level}_gflops"] = ms, flops / ms / 1e6
            with ops.backend("reference"):
                row["torch_ms"] = median_ms(lambda: ref_fn(*a), max(3, args.repeats // 2))
            results["rows"].append(row)
            best = simd_levels()[-1]
            print(f"{name:16s} B={B:2d}  " + "  ".join(
                f"{lv} {row[f'{lv}_ms']:8.2f} ms ({row[f'{lv}_gflops']:5.0f} GFLOP/s, err {row[f'{lv}_rel_err']:.1e})"
                for lv in simd_levels()) + f"  torch {row['torch_ms']:8.2f} ms  x{row['torch_ms'] / row[f'{best}_ms']:.1f}",
                flush=True)
    if old is None:
        os.environ.pop("SAMFAST_SIMD", None)
    else:
        os.environ["SAMFAST_SIMD"] = old
    write_json(args.json, results, indent=2)
    return results


if __name__ == "__main__":
    main()
