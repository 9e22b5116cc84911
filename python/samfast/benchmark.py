"""Latency benchmark shared by `samfast bench` and benchmarks/bench_latency.py.

Cases (all through the predictor API, warm-up runs excluded, CUDA synchronised per run):
  encoder         set_image(HxWx3 uint8): resize + normalise + pad + image encoder
  decoder_1pt     1 point,  multimask (3 masks), postprocessing to HxW bool masks included
  decoder_1box    1 box,    single mask,          postprocessing included
  decoder_64box   64 boxes in one batch (predict_torch), single mask each, postprocessing included
Engines: samfast; with compare=True also the official segment_anything (same weights; for bf16/fp16
under torch.autocast) and onnxruntime (samfast.export_onnx graphs; the official ONNX decoder contract
has batch 1, so 64 boxes are 64 runs).
Memory: CPU: peak RSS (VmHWM, reset per engine via /proc/self/clear_refs where allowed, else the
process's ru_maxrss high-water mark); CUDA: torch.cuda.max_memory_allocated per engine.
"""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

CASES = ("encoder", "decoder_1pt", "decoder_1box", "decoder_64box")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_config(spec: str):
    """"E,D,H,S[,g1:g2:...]" (embed dim, depth, heads, image size, global-attention blocks) -> SamConfig.
    Without the 5th field every (depth//4)-th block is global, like the official models."""
    from .build_sam import SamConfig

    parts = [p.strip() for p in spec.split(",")]
    if len(parts) not in (4, 5):
        raise ValueError(f"--config: expected embed_dim,depth,heads,image_size[,g1:g2], got {spec!r}")
    try:
        e, d, h, s = (int(p) for p in parts[:4])
        step = max(1, d // 4)
        glob = tuple(int(g) for g in parts[4].split(":")) if len(parts) == 5 else \
            tuple(i for i in range(d) if (i + 1) % step == 0)
    except ValueError:
        raise ValueError(f"--config: expected integers, got {spec!r}") from None
    if min(e, d, h, s) < 1 or e % h or s % 16 or any(not 0 <= g < d for g in glob):
        raise ValueError(f"--config {spec!r}: need positive values, embed_dim divisible by heads, image_size "
                         f"a multiple of 16 and global blocks within 0..depth-1")
    return SamConfig(e, d, h, glob, image_size=s, name=f"custom({spec})")


def summarize(samples_ms: Sequence[float]) -> Dict[str, float]:
    """Latency samples (ms) -> {p50, p90, p99, mean, min, max, n}."""
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _bar(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False, unit="run")


def time_fn(fn: Callable[[], object], runs: int, warmup: int, sync: Callable[[], None], bar=None) -> List[float]:
    """Run fn `warmup` times, then `runs` timed times; -> per-run milliseconds."""
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            out.append((time.perf_counter() - t0) * 1e3)
        if bar is not None:
            bar.update(1)
    return out


# ---------------------------------------------------------------------------- memory


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / (1024 * 1024 if platform.system() == "Darwin" else 1024)


@contextlib.contextmanager
def _memory(device: torch.device, into: Dict):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield
        torch.cuda.synchronize(device)
        into.update(peak_memory_mb=torch.cuda.max_memory_allocated(device) / 2**20,
                    memory_kind="cuda max_memory_allocated")
    else:
        per_engine = _reset_peak_rss()
        yield
        into.update(peak_memory_mb=_peak_rss_mb(),
                    memory_kind="peak RSS" + ("" if per_engine else " (process high-water mark)"))


# ---------------------------------------------------------------------------- engines


def bench_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth HxWx3 uint8 test image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 128 + 60 * np.sin(xx[..., None] / max(w, 1) * rng.uniform(2, 8, 3)) \
        + 60 * np.cos(yy[..., None] / max(h, 1) * rng.uniform(2, 8, 3)) + rng.normal(0, 8, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _prompts(h: int, w: int, n_boxes: int = 64, seed: int = 0):
    """-> point (1x2), label (1,), box (4,), boxes (n x 4) in image pixels."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(0, 0.6 * w, n_boxes)
    y0 = rng.uniform(0, 0.6 * h, n_boxes)
    boxes = np.stack([x0, y0, x0 + rng.uniform(0.1, 0.4) * w, y0 + rng.uniform(0.1, 0.4) * h], 1)
    return np.array([[w / 2, h / 2]]), np.array([1]), boxes[0], boxes


def _predictor_cases(predictor, image: np.ndarray, device: torch.device) -> Dict[str, Callable]:
    """Case name -> zero-arg callable, for samfast's or the official SamPredictor (same API)."""
    h, w = image.shape[:2]
    pt, lab, box, boxes = _prompts(h, w)
    predictor.set_image(image)
    tf = predictor.transform
    pt_t = torch.as_tensor(tf.apply_coords(pt, (h, w)), dtype=torch.float, device=device)[None]
    lab_t = torch.as_tensor(lab, dtype=torch.int, device=device)[None]
    box_t = torch.as_tensor(tf.apply_boxes(box[None], (h, w)), dtype=torch.float, device=device)
    boxes_t = torch.as_tensor(tf.apply_boxes(boxes, (h, w)), dtype=torch.float, device=device)
    return {
        "encoder": lambda: predictor.set_image(image),
        "decoder_1pt": lambda: predictor.predict_torch(pt_t, lab_t, multimask_output=True),
        "decoder_1box": lambda: predictor.predict_torch(None, None, boxes=box_t, multimask_output=False),
        "decoder_64box": lambda: predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=False),
    }


def _run_cases(name: str, cases: Dict[str, Callable], device: torch.device, runs: int, warmup: int,
               progress: bool, ctx=contextlib.nullcontext) -> Dict:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    res: Dict = {"cases": {}}
    bar = _bar(len(cases) * (runs + warmup), f"bench {name}", progress)
    try:
        with _memory(device, res), torch.inference_mode(), ctx():
            for case, fn in cases.items():
                if bar is not None:
                    bar.set_postfix_str(case)
                samples = time_fn(fn, runs, warmup, sync, bar)
                res["cases"][case] = {**summarize(samples), "samples_ms": [round(v, 4) for v in samples]}
    finally:
        if bar is not None:
            bar.close()
    return res


def official_from_samfast(model):
    """The official segment_anything Sam with samfast `model`'s weights (float32, same device)."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from .build_sam import infer_config

    state = {k: v.float() for k, v in model.state_dict().items()}
    cfg = infer_config(state)
    grid = cfg.image_size // cfg.patch_size
    off = Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.depth, embed_dim=cfg.embed_dim, img_size=cfg.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg.num_heads,
            patch_size=cfg.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=list(cfg.global_attn_indexes), window_size=cfg.window_size, out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256,
            iou_head_depth=3, iou_head_hidden_dim=256),
    )
    off.load_state_dict(state, strict=False)   # pixel_mean/std are non-persistent in samfast
    return off.to(model.device).eval()


def _onnx_cases(model, image: np.ndarray, dtype: torch.dtype, device: torch.device, tmpdir: str):
    """Export encoder + decoder with samfast.export_onnx and build onnxruntime cases."""
    import onnxruntime as ort

    from . import onnx as sonnx
    from .utils.transforms import ResizeLongestSide

    export = sonnx.export_onnx
    odt = torch.float16 if dtype == torch.float16 else torch.float32
    enc_path = export(model, os.path.join(tmpdir, "encoder.onnx"), part="encoder", dtype=odt)
    dec_path = export(model, os.path.join(tmpdir, "decoder.onnx"), part="decoder", dtype=odt)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    prov = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    prov = [p for p in prov if p in ort.get_available_providers()]
    enc, dec = ort.InferenceSession(enc_path, so, providers=prov), ort.InferenceSession(dec_path, so, providers=prov)
    S = model.image_encoder.img_size
    tf = ResizeLongestSide(S)
    mean = model.pixel_mean.cpu().numpy().reshape(3, 1, 1)
    std = model.pixel_std.cpu().numpy().reshape(3, 1, 1)
    h, w = image.shape[:2]
    state: Dict = {}
    grid = model.prompt_encoder.mask_input_size

    def encode():
        x = (tf.apply_image(image).transpose(2, 0, 1).astype(np.float32) - mean) / std
        x = np.pad(x, ((0, 0), (0, S - x.shape[1]), (0, S - x.shape[2])))[None]
        state["emb"] = enc.run(None, {enc.get_inputs()[0].name: x})[0]

    def decode(coords: np.ndarray, labels: np.ndarray):
        feeds = {"image_embeddings": state["emb"], "point_coords": coords.astype(np.float32)[None],
                 "point_labels": labels.astype(np.float32)[None],
                 "mask_input": np.zeros((1, 1, *grid), np.float32), "has_mask_input": np.zeros(1, np.float32),
                 "orig_im_size": np.array([h, w], np.float32)}
        masks = dec.run(None, feeds)[0]
        return masks > model.mask_threshold

    pt, lab, box, boxes = _prompts(h, w)
    pad_pt = (np.concatenate([tf.apply_coords(pt, (h, w)), [[0.0, 0.0]]]), np.array([1, -1]))
    box_pts = [(tf.apply_coords(b.reshape(2, 2), (h, w)), np.array([2, 3])) for b in boxes]
    encode()
    return {
        "encoder": encode,
        "decoder_1pt": lambda: decode(*pad_pt),
        "decoder_1box": lambda: decode(*box_pts[0]),
        "decoder_64box": lambda: [decode(*b) for b in box_pts],
    }


def check_device(device: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' -> torch.device, or a ValueError that says why it cannot be used."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is visible (torch.cuda.is_available() is False)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return dev


def run_benchmark(arch: str = "vit_b", device: str = "cpu", dtype: str = "fp32", checkpoint: Optional[str] = None,
                  config: Optional[str] = None, runs: int = 10, warmup: int = 2,
                  image_size: Tuple[int, int] = (480, 640), compare: bool = False, progress: bool = True,
                  log: Callable[[str], None] = lambda s: None) -> Dict:
    """Benchmark samfast (and, with compare, the official model and onnxruntime). Returns a JSON-able
    dict: {"settings", "machine", "engines": {name: {"cases": {case: stats}, "peak_memory_mb", ...}},
    "notes"}. Stats are milliseconds (see `summarize`)."""
    from .api import load

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"--image-size must be positive, got {h},{w}")
    dev = check_device(device)
    tdt = DTYPES[dtype]
    arch_or_cfg = parse_config(config) if config else arch
    if arch_or_cfg == "auto" and checkpoint is None:
        raise ValueError("--arch auto needs --checkpoint (or give --arch vit_b|vit_l|vit_h or --config)")
    log(f"building {arch_or_cfg if isinstance(arch_or_cfg, str) else arch_or_cfg.name} "
        f"({'checkpoint ' + str(checkpoint) if checkpoint else 'random weights'}) on {dev}, {dtype}")
    model = load(arch_or_cfg, checkpoint, dev, tdt)
    image = bench_image(h, w)
    result: Dict = {
        "settings": {"arch": arch, "config": config, "device": str(dev), "dtype": dtype, "checkpoint": checkpoint,
                     "runs": runs, "warmup": warmup, "image_size": [h, w], "compare": compare,
                     "model_image_size": model.image_encoder.img_size, "torch_threads": torch.get_num_threads()},
        "machine": machine_info(), "engines": {}, "notes": [],
    }
    notes = result["notes"]
    from .predictor import SamPredictor

    log(f"timing samfast ({runs} runs + {warmup} warm-up per case)")
    result["engines"]["samfast"] = _run_cases("samfast", _predictor_cases(SamPredictor(model), image, dev),
                                              dev, runs, warmup, progress)
    if compare:
        try:
            from segment_anything import SamPredictor as OfficialPredictor

            log("timing official segment_anything (same weights)")
            off = official_from_samfast(model)
            ctx = contextlib.nullcontext if tdt == torch.float32 else \
                (lambda: torch.autocast(dev.type, dtype=tdt))
            if tdt != torch.float32:
                notes.append(f"official: fp32 weights under torch.autocast({dev.type}, {dtype})")
            with ctx():
                cases = _predictor_cases(OfficialPredictor(off), image, dev)
            result["engines"]["official"] = _run_cases("official", cases, dev, runs, warmup, progress, ctx)
            del off, cases
        except ImportError:
            notes.append("official: segment_anything is not installed; skipped")
        except Exception as e:  # noqa: BLE001  (a comparison must not kill the benchmark)
            notes.append(f"official: failed ({type(e).__name__}: {e}); skipped")
        result["engines"].update(_bench_onnx(model, image, tdt, dev, runs, warmup, progress, notes, log))
    return result


def _bench_onnx(model, image, tdt, dev, runs, warmup, progress, notes, log=lambda s: None) -> Dict:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        notes.append("onnxruntime: not installed; skipped")
        return {}
    if tdt == torch.bfloat16:
        notes.append("onnxruntime: no bf16 export; skipped")
        return {}
    try:
        from . import onnx as sonnx

        sonnx.export_onnx  # noqa: B018  (raises when the export module is absent)
    except (ImportError, AttributeError) as e:
        notes.append(f"onnxruntime: samfast.onnx export not available ({e}); skipped")
        return {}
    try:
        log("exporting ONNX (samfast.export_onnx) and timing onnxruntime")
        with tempfile.TemporaryDirectory(prefix="samfast-bench-") as tmp:
            cases = _onnx_cases(model, image, tdt, dev, tmp)
            res = _run_cases("onnxruntime", cases, torch.device("cpu") if dev.type == "cpu" else dev,
                             runs, warmup, progress)
        notes.append("onnxruntime: official ONNX decoder contract (batch 1): decoder_64box = 64 runs; its peak "
                     "RSS includes memory the process kept after the ONNX export")
        return {"onnxruntime": res}
    except Exception as e:  # noqa: BLE001
        notes.append(f"onnxruntime: failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                     f"skipped")
        return {}


# ---------------------------------------------------------------------------- reporting


def machine_info() -> Dict:
    """CPU model / cores, versions, GPU (JSON-able)."""
    from . import __version__

    info = {"cpu": platform.processor() or platform.machine(), "logical_cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "samfast": __version__,
            "numpy": np.__version__, "platform": platform.platform()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        kv = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        kv = {k.strip(): v.strip() for k, v in kv.items()}
        info["cpu"] = kv.get("Model name", info["cpu"])
        if "Core(s) per socket" in kv and "Socket(s)" in kv:
            info["physical_cores"] = int(kv["Core(s) per socket"]) * int(kv["Socket(s)"])
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    try:
        from . import _C

        info["simd"] = _C.build_info().get("simd_runtime")
    except Exception:  # noqa: BLE001
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def format_table(result: Dict) -> str:
    """Human-readable latency table (ms), memory and speed-ups vs the other engines."""
    s = result["settings"]
    lines = [f"arch={s['config'] or s['arch']} device={s['device']} dtype={s['dtype']} image={s['image_size'][0]}x"
             f"{s['image_size'][1]} (model input {s['model_image_size']}) runs={s['runs']} warmup={s['warmup']} "
             f"threads={s['torch_threads']}",
             f"{'engine':<12} {'case':<14} {'p50':>9} {'p90':>9} {'p99':>9} {'mean':>9}   (ms)"]
    for eng, r in result["engines"].items():
        for case, st in r["cases"].items():
            lines.append(f"{eng:<12} {case:<14} {st['p50']:9.2f} {st['p90']:9.2f} {st['p99']:9.2f} {st['mean']:9.2f}")
    for eng, r in result["engines"].items():
        lines.append(f"peak memory {eng}: {r['peak_memory_mb']:.0f} MiB ({r['memory_kind']})")
    base = result["engines"].get("samfast")
    for eng, r in result["engines"].items():
        if eng == "samfast" or base is None:
            continue
        sp = ", ".join(f"{c} {r['cases'][c]['p50'] / base['cases'][c]['p50']:.2f}x"
                       for c in CASES if c in r["cases"] and c in base["cases"])
        lines.append(f"samfast speed-up vs {eng} (p50): {sp}")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def check_plot_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib (or samfast[cli])") from None


def plot(result: Dict, path: str) -> None:
    """Grouped bar chart of p50 latency per case (error bar up to p90), one bar per engine."""
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(result["engines"])
    fig, axes = plt.subplots(1, len(CASES), figsize=(3.2 * len(CASES), 3.6))
    for ax, case in zip(axes, CASES):
        p50 = [result["engines"][e]["cases"][case]["p50"] for e in engines]
        p90 = [result["engines"][e]["cases"][case]["p90"] for e in engines]
        ax.bar(engines, p50, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90)]], capsize=3,
               color=["C0", "C1", "C2", "C3"][: len(engines)])
        ax.set_title(case)
        ax.set_ylabel("ms (p50, bar to p90)")
        ax.tick_params(axis="x", labelrotation=30)
    s = result["settings"]
    fig.suptitle(f"samfast {s['config'] or s['arch']} {s['device']} {s['dtype']} {result['machine'].get('cpu', '')}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
