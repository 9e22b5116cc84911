"""`samfast export ...`: export a checkpoint's decoder or encoder to ONNX.

    samfast export --arch vit_b --checkpoint sam_vit_b_01ec64.pth --part decoder -o decoder.onnx
    samfast export --checkpoint sam_vit_b_01ec64.pth --part encoder -o encoder.onnx --fp16

`export_main(argv)` is what `samfast.cli` dispatches to; errors end in SystemExit with one line.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="samfast export",
        description="Export SAM's prompt decoder (official segment-anything ONNX contract) or image "
                    "encoder to ONNX; run the result with onnxruntime / onnxruntime-gpu or "
                    "samfast.onnx.OnnxPredictor.",
    )
    p.add_argument("--checkpoint", required=True, help="SAM checkpoint (.pth / .safetensors)")
    p.add_argument("--arch", default="auto", help="vit_b | vit_l | vit_h | default | auto (read from the "
                                                  "checkpoint; default)")
    p.add_argument("--part", choices=("decoder", "encoder"), default="decoder", help="graph to export (default: decoder)")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    p.add_argument("--fp16", action="store_true", help="fp16 weights/activations (float32 graph I/O)")
    p.add_argument("--return-single-mask", action="store_true",
                   help="decoder: pick one mask in-graph (official rule) instead of returning all 4")
    p.add_argument("--use-stability-score", action="store_true",
                   help="decoder: replace predicted IoU with the stability score")
    p.add_argument("--return-extra-metrics", action="store_true",
                   help="decoder: also output stability_scores and areas")
    p.add_argument("--gelu-approximate", action="store_true", help="tanh GELU (e.g. for TensorRT)")
    p.add_argument("--static", action="store_true",
                   help="decoder: static number of points (5; pad with (0, 0) points labelled -1)")
    p.add_argument("--preprocess", action="store_true",
                   help="encoder: uint8 HxWx3 input, resize/normalise/pad in the graph (no antialias)")
    p.add_argument("--no-check", action="store_true", help="skip onnx.checker / shape inference")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def export_main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (without the leading "export"), export, return 0. Errors -> SystemExit(message)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not os.path.exists(args.checkpoint):
        raise SystemExit(f"samfast export: error: checkpoint not found: {args.checkpoint!r}")
    if os.path.isdir(args.checkpoint):
        raise SystemExit(f"samfast export: error: checkpoint is a directory: {args.checkpoint!r}")
    if args.opset < 17:
        raise SystemExit(f"samfast export: error: --opset must be >= 17, got {args.opset}")
    if args.part == "encoder" and (args.return_single_mask or args.use_stability_score or args.return_extra_metrics):
        raise SystemExit("samfast export: error: --return-single-mask / --use-stability-score / "
                         "--return-extra-metrics apply to --part decoder")
    if args.part == "decoder" and args.preprocess:
        raise SystemExit("samfast export: error: --preprocess applies to --part encoder")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SystemExit(f"samfast export: error: output directory is a file: {out_dir!r}")
    try:
        import onnx  # noqa: F401
    except ImportError:
        if not args.no_check:
            raise SystemExit("samfast export: error: the onnx package is missing; pip install 'samfast[onnx]' "
                             "(or pass --no-check)")
    import torch

    from ..api import load
    from ..build_sam import CheckpointError
    from .export import export_onnx

    t0 = time.perf_counter()
    try:
        model = load(args.arch, args.checkpoint)
    except (CheckpointError, ValueError, FileNotFoundError, ImportError) as e:
        raise SystemExit(f"samfast export: error: {e}")
    try:
        export_onnx(
            model, args.output, part=args.part, opset=args.opset,
            dtype=torch.float16 if args.fp16 else torch.float32,
            return_single_mask=args.return_single_mask, use_stability_score=args.use_stability_score,
            return_extra_metrics=args.return_extra_metrics, gelu_approximate=args.gelu_approximate,
            dynamic=not args.static, preprocess=args.preprocess, check=not args.no_check,
        )
    except (ValueError, TypeError, OSError) as e:
        raise SystemExit(f"samfast export: error: {e}")
    if not args.quiet:
        size = os.path.getsize(args.output) / 2**20
        print(f"wrote {args.output} ({args.part}, {'fp16' if args.fp16 else 'fp32'}, opset {args.opset}, "
              f"{size:.1f} MiB) in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":  # python -m samfast.onnx.cli ...
    sys.exit(export_main())
