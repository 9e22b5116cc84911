"""`samfast amg`: automatic mask generation for an image or a folder of images.

    samfast amg IMAGE_OR_DIR -o out/ --checkpoint sam_vit_b.pth [--arch vit_b] [--points-per-side 32]
    python -m samfast.amg_cli ...   (same)

Writes per image out/<stem>.json ({"image", "height", "width", "annotations": [COCO-RLE records]})
and out/<stem>.png (an overlay of the masks). Resumable: images whose JSON exists are skipped (unless
--overwrite). Files are written to a temporary name and moved into place with os.replace.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _fail(msg: str) -> "SystemExit":
    return SystemExit(f"samfast amg: error: {msg}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise _fail(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="samfast amg", description="Segment everything in images (SAM automatic mask generator).")
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--checkpoint", required=True, help="SAM checkpoint (.pth / .safetensors)")
    p.add_argument("--arch", default="auto", help="vit_b | vit_l | vit_h | auto (read from the checkpoint)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--points-per-batch", type=int, default=64)
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    p.add_argument("--box-nms-thresh", type=float, default=0.7)
    p.add_argument("--crop-n-layers", type=int, default=0)
    p.add_argument("--min-mask-region-area", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="redo images whose JSON already exists")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay PNGs")
    p.add_argument("--progress", action="store_true", help="show a progress bar per image (needs tqdm)")
    p.add_argument("--quiet", action="store_true")
    return p


def list_images(path: Path) -> List[Path]:
    if not path.exists():
        raise _fail(f"no such file or folder: {path}")
    if path.is_dir():
        imgs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not imgs:
            raise _fail(f"no images ({', '.join(IMAGE_EXTS)}) in folder {path}")
        return imgs
    return [path]


def _out_stems(images: Sequence[Path]) -> List[str]:
    """<stem> per image, or <name> where two images share a stem."""
    stems = [p.stem for p in images]
    return [p.name if stems.count(p.stem) > 1 else p.stem for p in images]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def overlay(image: np.ndarray, masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8 image, masks [N, H, W] bool (drawn largest first) -> HxWx3 uint8 blend."""
    out = image.astype(np.float32)
    rng = np.random.default_rng(seed)
    order = np.argsort([-int(m.sum()) for m in masks]) if len(masks) else []
    for i in order:
        color = rng.uniform(40, 255, size=3).astype(np.float32)
        m = masks[i]
        out[m] = 0.45 * out[m] + 0.55 * color
    return np.clip(out, 0, 255).astype(np.uint8)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise _fail(f"cannot read image {path}: {e}") from None


def amg_main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    for name in ("points_per_side", "points_per_batch"):
        if getattr(args, name) < 1:
            raise _fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.crop_n_layers < 0:
        raise _fail(f"--crop-n-layers must be >= 0, got {args.crop_n_layers}")
    images = list_images(Path(args.input))
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise _fail(f"checkpoint not found: {ckpt}")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise _fail(f"--output exists and is not a folder: {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)

    stems = _out_stems(images)
    todo = [(p, s) for p, s in zip(images, stems) if args.overwrite or not (out_dir / f"{s}.json").exists()]
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    if len(todo) < len(images):
        log(f"samfast amg: skipping {len(images) - len(todo)} image(s) with existing JSON")
    if not todo:
        return 0

    import torch

    import samfast
    from samfast.utils.amg import coco_encode_rles, rles_to_masks

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail(f"--device {args.device}: CUDA is not available")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise _fail(f"bad --device {args.device!r}: {e}") from None
    try:
        model = samfast.load(args.arch, ckpt, device=device)
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        raise _fail(f"cannot load checkpoint {ckpt} (arch {args.arch}): {e}") from None
    gen = samfast.SamAutomaticMaskGenerator(
        model, points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh, crop_n_layers=args.crop_n_layers,
        min_mask_region_area=args.min_mask_region_area, output_mode="uncompressed_rle",
        progress=True if args.progress else False)

    for k, (path, stem) in enumerate(todo):
        image = _load_image(path)
        t0 = time.perf_counter()
        anns = gen.generate(image)
        rles = [a["segmentation"] for a in anns]
        for a, coco in zip(anns, coco_encode_rles(rles)):
            a["segmentation"] = coco
        if not args.no_overlay:
            masks = rles_to_masks(rles).numpy() if rles else np.zeros((0,) + image.shape[:2], bool)
            from PIL import Image

            ov = Image.fromarray(overlay(image, masks))
            _atomic_write(out_dir / f"{stem}.png", lambda f: ov.save(f, format="PNG"))
        doc = {"image": path.name, "height": int(image.shape[0]), "width": int(image.shape[1]), "annotations": anns}
        # JSON last: its presence marks the image as done (resume).
        _atomic_write(out_dir / f"{stem}.json", lambda f: f.write(json.dumps(doc).encode()))
        log(f"[{k + 1}/{len(todo)}] {path.name}: {len(anns)} masks in {time.perf_counter() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(amg_main())
