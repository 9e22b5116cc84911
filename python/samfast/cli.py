"""`samfast` command line: bench | segment | info | export | amg.

    samfast bench --arch vit_b --device cpu --dtype fp32 --runs 20 --compare --json out.json --plot out.png
    samfast segment photo.jpg --point 500,375 --checkpoint sam_vit_b.pth -o mask.png --json
    samfast info
    samfast export ...   (samfast.onnx.cli)      samfast amg ...   (samfast.amg_cli)

Errors in arguments, missing files and bad checkpoints print one line `samfast: error: ...` and exit
with status 2 (SAMFAST_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence


class UsageError(ValueError):
    """A bad command-line value (reported as a one-line error, exit status 2)."""


def _floats(spec: str, n: Sequence[int], what: str) -> List[float]:
    try:
        vals = [float(v) for v in spec.split(",")]
    except ValueError:
        raise UsageError(f"{what}: expected {' or '.join(map(str, n))} comma-separated numbers, got {spec!r}") from None
    if len(vals) not in n:
        raise UsageError(f"{what}: expected {' or '.join(map(str, n))} comma-separated numbers, got {spec!r}")
    return vals


def _image_size(spec: str):
    vals = _floats(spec, (2,), "--image-size H,W")
    if any(v < 1 or v != int(v) for v in vals):
        raise UsageError(f"--image-size H,W: expected positive integers, got {spec!r}")
    return int(vals[0]), int(vals[1])


def _positive(name: str):
    def conv(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < (1 if name == "runs" else 0):
            raise argparse.ArgumentTypeError(f"must be {'>= 1' if name == 'runs' else '>= 0'}, got {v}")
        return v
    return conv


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="samfast", description="samfast: fast Segment Anything (SAM).")
    sub = p.add_subparsers(dest="command", metavar="{bench,segment,info,export,amg}")
    sub.required = True

    b = sub.add_parser("bench", help="latency benchmark (encoder / decoder p50, p90, p99, memory)")
    add_bench_args(b)

    s = sub.add_parser("segment", help="segment an image from point / box prompts, write mask PNGs")
    s.add_argument("image", help="input image (any format PIL reads)")
    s.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="point prompt in pixels; label 1 = foreground (default), 0 = background; repeatable")
    s.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box prompt in pixels")
    s.add_argument("--checkpoint", required=True, help="SAM checkpoint (.pth / .safetensors)")
    s.add_argument("--arch", default="auto", help="vit_b | vit_l | vit_h | auto (read from checkpoint; default)")
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    s.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    s.add_argument("-o", "--output", required=True, help="mask PNG to write (overlay: <name>_overlay.png)")
    s.add_argument("--all", action="store_true", help="ask SAM for 3 masks and write all (<name>_<i>.png)")
    s.add_argument("--json", action="store_true", help="print scores / boxes / paths as JSON to stdout")

    i = sub.add_parser("info", help="versions, build info, CPU features, CUDA devices")
    i.add_argument("--json", action="store_true", help="print as JSON")

    for name, hlp in (("export", "ONNX export (samfast.onnx)"), ("amg", "automatic mask generation")):
        e = sub.add_parser(name, help=hlp, add_help=False)
        e.add_argument("args", nargs=argparse.REMAINDER)
    return p


def add_bench_args(b: argparse.ArgumentParser) -> None:
    """Benchmark options (shared with benchmarks/bench_latency.py)."""
    b.add_argument("--arch", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "default", "auto"],
                   help="official configuration (default vit_b; auto = from --checkpoint)")
    b.add_argument("--config", metavar="E,D,H,S[,g1:g2]",
                   help="custom small model instead of --arch: embed_dim,depth,heads,image_size[,global blocks]")
    b.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    b.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    b.add_argument("--checkpoint", help="weights to load (default: random weights)")
    b.add_argument("--runs", type=_positive("runs"), default=10, help="timed runs per case (default 10)")
    b.add_argument("--warmup", type=_positive("warmup"), default=2, help="untimed warm-up runs (default 2)")
    b.add_argument("--image-size", default="480,640", metavar="H,W", help="input image size (default 480,640)")
    b.add_argument("--threads", type=_positive("threads"),
                   help="CPU threads for torch and samfast's kernels (default: all cores)")
    b.add_argument("--compare", action="store_true",
                   help="also time official segment_anything (same weights) and onnxruntime when available")
    b.add_argument("--json", metavar="PATH", help="write all results (incl. per-run samples) as JSON")
    b.add_argument("--plot", metavar="PATH", help="bar chart PNG (needs matplotlib)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------- commands


def cmd_bench(args, out=print) -> int:
    size = _image_size(args.image_size)
    if args.checkpoint and not os.path.exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint!r}")
    from . import benchmark   # imports torch: after the cheap checks

    if args.plot:
        benchmark.check_plot_available()
    if args.threads:
        from . import ops

        ops.set_num_threads(args.threads)  # torch's CPU ops and samfast's kernels
    res = benchmark.run_benchmark(
        arch=args.arch, device=args.device, dtype=args.dtype, checkpoint=args.checkpoint, config=args.config,
        runs=args.runs, warmup=args.warmup, image_size=size, compare=args.compare,
        progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    out(benchmark.format_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        out(f"wrote {args.json}")
    if args.plot:
        benchmark.plot(res, args.plot)
        out(f"wrote {args.plot}")
    return 0


def _overlay(image, mask, points, box):
    """RGB PIL image with the mask tinted blue and the prompts drawn."""
    import numpy as np
    from PIL import Image, ImageDraw

    arr = np.asarray(image).astype(np.float32)
    tint = np.array([30, 144, 255], np.float32)
    arr[mask] = 0.45 * arr[mask] + 0.55 * tint
    im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    r = max(2, round(max(im.size) / 150))
    for x, y, lab in points:
        d.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0) if lab else (255, 0, 0), outline=(255, 255, 255))
    if box is not None:
        d.rectangle(box, outline=(0, 255, 0), width=max(1, r // 2))
    return im


def cmd_segment(args, out=print) -> int:
    if not args.point and args.box is None:
        raise UsageError("segment: give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    points = []
    for spec in args.point:
        v = _floats(spec, (2, 3), "--point X,Y[,LABEL]")
        if len(v) == 3 and v[2] not in (0, 1):
            raise UsageError(f"--point: label must be 1 (foreground) or 0 (background), got {spec!r}")
        points.append((v[0], v[1], int(v[2]) if len(v) == 3 else 1))
    box = _floats(args.box, (4,), "--box X0,Y0,X1,Y1") if args.box else None
    if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
        raise UsageError(f"--box: expected x0 < x1 and y0 < y1, got {args.box!r}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"output directory does not exist: {out_dir!r}")
    if not os.path.exists(args.image):
        raise FileNotFoundError(f"image not found: {args.image!r}")
    if not os.path.exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint!r}")

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(args.image).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"cannot read image {args.image!r}: {e}") from None
    import torch

    from . import benchmark
    from .api import load
    from .predictor import SamPredictor

    benchmark.check_device(args.device)

    model = load(args.arch, args.checkpoint, args.device, benchmark.DTYPES[args.dtype])
    pred = SamPredictor(model)
    pred.set_image(np.asarray(image))
    multimask = args.all or (len(points) == 1 and box is None)
    with torch.inference_mode():
        masks, scores, _ = pred.predict(
            point_coords=np.array([p[:2] for p in points]) if points else None,
            point_labels=np.array([p[2] for p in points]) if points else None,
            box=np.array(box) if box is not None else None, multimask_output=multimask)
    order = np.argsort(-scores)
    stem, ext = os.path.splitext(args.output)
    ext = ext or ".png"
    results = []
    for rank, k in enumerate(order if args.all else order[:1]):
        path = args.output if rank == 0 else f"{stem}_{rank}{ext}"
        m = masks[k]
        Image.fromarray((m * 255).astype(np.uint8)).save(path)
        ys, xs = np.nonzero(m)
        bx = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if xs.size else None
        results.append({"rank": rank, "score": float(scores[k]), "box": bx, "area": int(m.sum()), "path": path})
    overlay = f"{stem}_overlay{ext}"
    _overlay(image, masks[order[0]], points, box).save(overlay)
    if args.json:
        out(json.dumps({"image": args.image, "size": [image.height, image.width], "masks": results,
                        "overlay": overlay}, indent=1))
    else:
        for r in results:
            out(f"mask {r['rank']}: score {r['score']:.3f} area {r['area']} box {r['box']} -> {r['path']}")
        out(f"overlay -> {overlay}")
    return 0


def _cpu_features() -> List[str]:
    want = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx512_fp16",
            "avx512_vnni", "amx_bf16", "amx_tile", "asimd", "sve")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in want if w in have]
    except OSError:
        pass
    return []


def cmd_info(args, out=print) -> int:
    import platform

    import numpy as np
    import torch

    from . import __version__, _C
    from .benchmark import machine_info

    info = {"samfast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
    for mod in ("onnxruntime", "onnx", "segment_anything"):
        try:
            info[mod] = getattr(__import__(mod), "__version__", "installed")
        except ImportError:
            info[mod] = None
    m = machine_info()
    info["cpu"] = {"model": m.get("cpu"), "logical_cores": m.get("logical_cores"),
                   "physical_cores": m.get("physical_cores"), "features": _cpu_features(),
                   "torch_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
                   "torch_threads": torch.get_num_threads()}
    info["build_info"] = _C.build_info()
    info["cuda"] = {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                    "devices": [{"index": i, "name": torch.cuda.get_device_name(i),
                                 "capability": list(torch.cuda.get_device_capability(i)),
                                 "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                                for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []}
    if args.json:
        out(json.dumps(info, indent=1, default=str))
        return 0
    for k in ("samfast", "torch", "numpy", "python", "onnxruntime", "onnx", "segment_anything"):
        out(f"{k:<17} {info[k] if info[k] is not None else 'not installed'}")
    c = info["cpu"]
    out(f"{'cpu':<17} {c['model']} ({c['physical_cores'] or '?'} cores, {c['logical_cores']} threads; "
        f"torch uses {c['torch_threads']})")
    out(f"{'cpu features':<17} {' '.join(c['features']) or '?'} (torch: {c['torch_capability']})")
    for k, v in info["build_info"].items():
        out(f"{'_C.' + k:<17} {v}")
    cu = info["cuda"]
    out(f"{'cuda':<17} {'available' if cu['available'] else 'not available'} (torch built with CUDA "
        f"{cu['torch_cuda']})")
    for d in cu["devices"]:
        out(f"  cuda:{d['index']} {d['name']} sm_{d['capability'][0]}{d['capability'][1]} {d['memory_gib']} GiB")
    return 0


def _dispatch(module: str, func: str, argv: List[str], what: str) -> int:
    import importlib

    try:
        mod = importlib.import_module(module)
        fn = getattr(mod, func)
    except ImportError as e:
        if getattr(e, "name", None) and not module.startswith(e.name) and e.name != module:
            raise  # a dependency of the module is missing: report that (one line, see main)
        raise UsageError(f"'samfast {what}' is not available in this installation ({module} is missing)") from None
    except AttributeError:
        raise UsageError(f"'samfast {what}' is not available: {module}.{func} is missing") from None
    rc = fn(argv)
    return int(rc or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point (`samfast ...` / `python -m samfast ...`); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # export / amg: hand everything after the sub-command to the other tool's parser (incl. --help)
    if argv and argv[0] in ("export", "amg"):
        table = {"export": ("samfast.onnx.cli", "export_main"), "amg": ("samfast.amg_cli", "amg_main")}
        return _run(lambda: _dispatch(*table[argv[0]], argv[1:], argv[0]))
    args = build_parser().parse_args(argv)       # argparse: usage + one error line, exit 2
    cmd = {"bench": cmd_bench, "segment": cmd_segment, "info": cmd_info}[args.command]
    return _run(lambda: cmd(args))


def _run(fn) -> int:
    import warnings

    # PIL-resized images are read-only numpy views; torch warns once about that (harmless here)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    debug = os.environ.get("SAMFAST_DEBUG", "") not in ("", "0")
    try:
        return fn()
    except KeyboardInterrupt:
        print("samfast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `samfast info | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:  # samfast.CheckpointError is a ValueError
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename and e.filename not in msg:
            msg = f"{msg}: {e.filename!r}"
        plain = type(e) is ValueError or type(e).__name__ == "CheckpointError" or \
            isinstance(e, (UsageError, FileNotFoundError, ImportError))
        kind = "" if plain else f"{type(e).__name__}: "
        print(f"samfast: error: {kind}{msg}", file=sys.stderr)
        return 2
