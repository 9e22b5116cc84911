"""CUDA benchmarks: samfast kernels vs their PyTorch references, and whole image encoders.

    python benchmarks/bench_cuda.py [--out DIR] [--quick] [--skip-encoders]

Timing: CUDA events around each call, after warm-up; the median of `--reps` runs (several input sets
rotated so repeated runs do not just measure L2). Random weights / inputs (latency does not depend on
them). Writes DIR/bench_cuda.json and DIR/bench_cuda.md, and prints the table last.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import traceback

import torch

import samfast.ops as ops  # the installed samfast (pip install .), not the source tree
from samfast import _C

ROWS = []


def time_cuda(fn, inputs, warmup=3, reps=20):
    """Median milliseconds of fn(*inputs[i % len(inputs)]) timed with CUDA events."""
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        args = inputs[i % len(inputs)]
        a.record()
        fn(*args)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def record(group, name, variant, ms, flops=None, nbytes=None, **extra):
    row = {"group": group, "case": name, "variant": variant, "ms": round(ms, 4)}
    if flops:
        row["tflops"] = round(flops / ms / 1e9, 2)
    if nbytes:
        row["gbps"] = round(nbytes / ms / 1e6, 1)
    row.update(extra)
    ROWS.append(row)
    print(f"  {group:10s} {name:34s} {variant:22s} {ms:9.3f} ms" + (f" {row['tflops']:8.2f} TFLOP/s" if flops else "")
          + (f" {row['gbps']:8.1f} GB/s" if nbytes else ""), flush=True)


def guarded(group, name, variant, fn):
    try:
        fn()
    except Exception as e:  # keep going: one failing case must not hide the others
        print(f"  {group} {name} {variant}: FAILED {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=2)
        ROWS.append({"group": group, "case": name, "variant": variant, "error": f"{type(e).__name__}: {e}"})


def samfast_vs_torch(group, name, tag, kernel, reference, inputs, flops=None, nbytes=None, kernel_tag=None):
    """Time `kernel` then `reference` on the same inputs: rows "samfast <kernel_tag or tag>" and
    "torch-ref <tag>", each guarded (a failure is recorded and the next case runs)."""
    for variant, fn in ((f"samfast {kernel_tag or tag}", kernel), (f"torch-ref {tag}", reference)):
        guarded(group, name, variant, lambda: record(group, name, variant, time_cuda(fn, inputs), flops, nbytes))


# ---- kernels -------------------------------------------------------------------------------------

ATTN = [  # name, B, H, W, heads, hd, window
    ("vit_b windowed (ws14)", 1, 64, 64, 12, 64, 14), ("vit_b global", 1, 64, 64, 12, 64, 0),
    ("vit_l windowed (ws14)", 1, 64, 64, 16, 64, 14), ("vit_l global", 1, 64, 64, 16, 64, 0),
    ("vit_h windowed (ws14)", 1, 64, 64, 16, 80, 14), ("vit_h global", 1, 64, 64, 16, 80, 0),
]


def bench_attention(dtypes, n_inputs):
    for name, B, H, W, heads, hd, ws in ATTN:
        C = heads * hd
        S = (ws, ws) if ws else (H, W)
        n_win = ((H + ws - 1) // ws) * ((W + ws - 1) // ws) if ws else 1
        N = S[0] * S[1]
        flops = B * n_win * heads * (4.0 * N * N * hd + 2.0 * N * (S[0] + S[1]) * hd)
        for dt in dtypes:
            inputs = [(torch.randn(B, H, W, 3 * C, device="cuda", dtype=dt), torch.randn(3 * C, device="cuda", dtype=dt),
                       0.1 * torch.randn(S[0], S[0], hd, device="cuda", dtype=dt),
                       0.1 * torch.randn(S[1], S[1], hd, device="cuda", dtype=dt)) for _ in range(n_inputs)]
            tag = str(dt).replace("torch.", "")
            path = ""
            if hasattr(_C, "rel_pos_attention_cuda_path"):
                q, b, rh, rw = inputs[0]
                out = torch.empty(B, H, W, C, device="cuda", dtype=dt)
                path = _C.rel_pos_attention_cuda_path(*[ops.tensor_ref(t) for t in (q, b, rh, rw, out)], heads, ws)
            samfast_vs_torch("attention", name, tag, lambda *a: ops._rel_pos_attention_op(*a, heads, ws),
                             lambda *a: ops.rel_pos_attention_reference(*a, heads, ws), inputs, flops,
                             kernel_tag=f"{tag} {path}")


def bench_mask_head(dtypes, n_inputs):
    C, C1, C2 = 256, 64, 32
    for B, M in [(1, 4), (16, 3)]:
        h = w = 64
        name = f"B={B} M={M} 64x64->256x256"
        flops = B * h * w * (2.0 * C * C1 * 4 + 2.0 * C1 * C2 * 16 + 2.0 * M * C2 * 16)
        for dt in dtypes:
            def mk():
                return (torch.randn(B, h, w, C, device="cuda", dtype=dt), torch.randn(C, C1, 2, 2, device="cuda", dtype=dt) / 16,
                        torch.randn(C1, device="cuda", dtype=dt), 1 + 0.1 * torch.randn(C1, device="cuda", dtype=dt),
                        torch.randn(C1, device="cuda", dtype=dt), torch.randn(C1, C2, 2, 2, device="cuda", dtype=dt) / 8,
                        torch.randn(C2, device="cuda", dtype=dt), torch.randn(B, M, C2, device="cuda", dtype=dt))
            inputs = [mk() for _ in range(n_inputs)]
            tag = str(dt).replace("torch.", "")
            samfast_vs_torch("mask_head", name, tag, ops._mask_head_op, ops.mask_head_reference, inputs, flops)


def bench_hypernet(dtypes, n_inputs):
    C, C2, M = 256, 32, 4
    if not hasattr(_C, "hypernet_mlps_cuda"):
        return
    for B in [1, 64]:
        name = f"B={B} M={M} C={C}"
        flops = 2.0 * B * M * (2 * C * C + C * C2)
        for dt in dtypes:
            def mk():
                return (torch.randn(B, M, C, device="cuda", dtype=dt), torch.randn(M, C, C, device="cuda", dtype=dt) / 16,
                        torch.randn(M, C, device="cuda", dtype=dt), torch.randn(M, C, C, device="cuda", dtype=dt) / 16,
                        torch.randn(M, C, device="cuda", dtype=dt), torch.randn(M, C2, C, device="cuda", dtype=dt) / 16,
                        torch.randn(M, C2, device="cuda", dtype=dt))
            inputs = [mk() for _ in range(n_inputs)]
            tag = str(dt).replace("torch.", "")
            samfast_vs_torch("hypernet", name, tag, ops._hypernet_mlps_op, ops.hypernet_mlps_reference, inputs, flops)


def bench_postprocess(dtypes, n_inputs):
    for B, M, orig in [(1, 3, (1500, 2250)), (16, 3, (1080, 1920))]:
        S = 1024
        inp = (round(1024 * orig[0] / max(orig)), round(1024 * orig[1] / max(orig)))
        name = f"B={B} M={M} 256^2->{orig[0]}x{orig[1]}"
        for dt in dtypes:
            inputs = [(torch.randn(B, M, 256, 256, device="cuda", dtype=dt) * 4,) for _ in range(n_inputs)]
            tag = str(dt).replace("torch.", "")
            for thr in (None, 0.0):
                kind = "logits" if thr is None else "bool"
                out_bytes = B * M * orig[0] * orig[1] * (1 if thr is not None else inputs[0][0].element_size())
                samfast_vs_torch("postproc", name, f"{tag} {kind}",
                                 lambda m: ops._postprocess_masks_op(m, S, inp[0], inp[1], orig[0], orig[1],
                                                                     thr or 0.0, thr is not None),
                                 lambda m: ops.postprocess_masks_reference(m, S, inp, orig, thr), inputs,
                                 nbytes=out_bytes)


# ---- encoders ------------------------------------------------------------------------------------


def bench_encoders(archs, reps):
    x = torch.randn(1, 3, 1024, 1024, device="cuda")
    try:
        from segment_anything import sam_model_registry as official
    except Exception as e:  # not installed on the device image: carry it as a wheel (see device_run.sh)
        official = None
        print(f"  official segment_anything unavailable ({type(e).__name__}: {e})")
    load = None
    try:
        import samfast
        load = getattr(samfast, "load", None)
    except Exception as e:
        print(f"  samfast.load unavailable ({type(e).__name__}: {e})")
    for arch in archs:
        if official is not None:
            def run_official(arch=arch):
                enc = official[arch]().image_encoder.cuda().eval()
                with torch.inference_mode():
                    record("encoder", arch, "official fp32", time_cuda(enc, [(x,)], warmup=2, reps=reps))
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        record("encoder", arch, "official bf16-autocast", time_cuda(enc, [(x,)], warmup=2, reps=reps))
                del enc
                torch.cuda.empty_cache()
            guarded("encoder", arch, "official", run_official)
        if load is not None:
            for dt in (torch.float32, torch.bfloat16):
                def run_samfast(arch=arch, dt=dt):
                    model = load(arch, device="cuda", dtype=dt)
                    enc = model.image_encoder
                    xd = x.to(dt)
                    with torch.inference_mode():
                        record("encoder", arch, f"samfast {str(dt)[6:]}", time_cuda(enc, [(xd,)], warmup=2, reps=reps))
                    del model, enc
                    torch.cuda.empty_cache()
                guarded("encoder", arch, f"samfast {dt}", run_samfast)


def table(rows):
    lines = ["| group | case | variant | ms (median) | TFLOP/s | GB/s |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['group']} | {r['case']} | {r['variant']} | FAILED: {r['error'][:60]} | | |")
        else:
            lines.append(f"| {r['group']} | {r['case']} | {r['variant']} | {r['ms']:.3f} | {r.get('tflops', '')} | "
                         f"{r.get('gbps', '')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true", help="fewer reps, vit_b encoder only")
    ap.add_argument("--skip-encoders", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py needs a CUDA GPU")
    if not _C.cuda_compiled():
        sys.exit("samfast._C was built without CUDA")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for both sides
    torch.backends.cudnn.allow_tf32 = False
    dtypes = [torch.float32, torch.bfloat16]
    n_inputs = 2 if args.quick else 4
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  samfast {_C.build_info()}", flush=True)
    bench_attention(dtypes, n_inputs)
    bench_mask_head(dtypes, n_inputs)
    bench_hypernet(dtypes, n_inputs)
    bench_postprocess(dtypes, n_inputs)
    if not args.skip_encoders:
        bench_encoders(["vit_b"] if args.quick else ["vit_b", "vit_l", "vit_h"], reps=5 if args.quick else 10)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
            "build_info": {k: str(v) for k, v in _C.build_info().items()}, "tf32": False}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_cuda.json"), "w") as f:
        json.dump({"meta": meta, "rows": ROWS}, f, indent=1)
    md = table(ROWS)
    with open(os.path.join(args.out, "bench_cuda.md"), "w") as f:
        f.write(f"{meta['device']}, torch {meta['torch']}\n\n{md}\n")
    print("\n" + md)


if __name__ == "__main__":
    main()
