"""Benchmark: samfast.SamAutomaticMaskGenerator vs segment_anything's, same weights, same process.

End to end (seconds per image and masks per second, medians over --repeats, runs interleaved) plus
the post-processing ops alone (NMS, stability score, mask->box, RLE, COCO RLE) against the official
utils / torchvision / pycocotools on realistic sizes. Without --checkpoint both models get the same
random weights (and low thresholds, so masks survive and post-processing does real work).

    PYTHONPATH=python python benchmarks/bench_amg.py [--config tiny|vit_b] [--checkpoint X]
        [--image 480x640] [--points-per-side 16] [--crop-n-layers 0] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

import samfast
from samfast import ops
from samfast.utils import amg as samfast_amg

from bench_common import median_s, write_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def build_models(args):
    """-> (official Sam, samfast Sam, description)."""
    from segment_anything import sam_model_registry

    if args.checkpoint:
        off = sam_model_registry[args.config](checkpoint=args.checkpoint).eval()
        return off, samfast.load("auto", args.checkpoint, device=args.device), f"{args.config} ({args.checkpoint})"
    if args.config == "tiny":
        from sam_testing import TINY, build_official, randomise

        off = randomise(build_official(TINY), 0)
    else:
        off = sam_model_registry[args.config]().eval()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sam.pth")
        torch.save(off.state_dict(), path)
        sf = samfast.load("auto", path, device=args.device)
    return off, sf, f"{args.config} (random weights)"


def bench_end_to_end(args, off_model, sf_model, image):
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    kw = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
              crop_n_layers=args.crop_n_layers, output_mode=args.output_mode)
    if not args.checkpoint:
        kw.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    kw["box_nms_thresh"] = args.box_nms_thresh if args.box_nms_thresh is not None else (
        0.7 if args.checkpoint else 1.0)
    off_model.to(args.device)
    gens = {"official": OfficialGenerator(off_model, **kw),
            "samfast": samfast.SamAutomaticMaskGenerator(sf_model, progress=False, **kw)}
    times = {k: [] for k in gens}
    counts = {}
    for k, g in gens.items():  # warm-up
        counts[k] = len(g.generate(image))
    for _ in range(args.repeats):  # interleaved
        for k, g in gens.items():
            t0 = time.perf_counter()
            counts[k] = len(g.generate(image))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    out = {}
    for k in gens:
        s = statistics.median(times[k])
        out[k] = {"s_per_image": s, "masks": counts[k], "masks_per_s": counts[k] / s}
    out["speedup"] = out["official"]["s_per_image"] / out["samfast"]["s_per_image"]
    return out


def bench_ops(args, h, w):
    """Post-processing on one batch of logits (points_per_batch * 3 masks at image size)."""
    from segment_anything.utils import amg as A

    g = torch.Generator().manual_seed(0)
    n = args.points_per_batch * 3
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy, cx = torch.rand(n, 1, 1, generator=g) * h, torch.rand(n, 1, 1, generator=g) * w
    r = (0.05 + 0.3 * torch.rand(n, 1, 1, generator=g)) * max(h, w)
    logits = (r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) / 4 + torch.randn(n, h, w, generator=g) * 0.5
    masks = logits > 0
    boxes = ops.mask_to_box(masks).float()
    scores = torch.rand(n, generator=g)
    zeros = torch.zeros(n, dtype=torch.int64)
    rep = args.op_repeats
    res = {}

    def pair(name, official, ours):
        t_off, t_ours = median_s(official, rep, warmup=1), median_s(ours, rep, warmup=1)
        res[name] = {"official_ms": 1e3 * t_off, "samfast_ms": 1e3 * t_ours, "speedup": t_off / t_ours}

    # The per-batch mask pass: low-res logits -> image-size logits (two bilinear steps) -> stability
    # score -> threshold -> boxes. Official: unfused, float masks at full size; samfast: one fused pass.
    import torch.nn.functional as F

    low = F.interpolate(logits[:, None, :: max(1, h // 64), :: max(1, w // 64)], (256, 256), mode="bilinear",
                        align_corners=False)[:, 0].contiguous()
    ih, iw = (1024, round(1024 * w / h)) if h >= w else (round(1024 * h / w), 1024)

    def official_pass():
        up = F.interpolate(low[:, None], (1024, 1024), mode="bilinear", align_corners=False)[..., :ih, :iw]
        up = F.interpolate(up, (h, w), mode="bilinear", align_corners=False)[:, 0]
        stab = A.calculate_stability_score(up, 0.0, 1.0)
        return A.batched_mask_to_box(up > 0.0), stab

    pair("fused_mask_pass", official_pass, lambda: ops.postprocess_masks_stats(low, 1024, (ih, iw), (h, w), 0.0, 1.0))

    pair("stability_score", lambda: A.calculate_stability_score(logits, 0.0, 1.0),
         lambda: ops.stability_score(logits, 0.0, 1.0))
    pair("mask_to_box", lambda: A.batched_mask_to_box(masks), lambda: ops.mask_to_box(masks))
    pair("rle_encode", lambda: A.mask_to_rle_pytorch(masks), lambda: samfast_amg.mask_to_rle(masks))
    rles = A.mask_to_rle_pytorch(masks)
    pair("rle_decode", lambda: [A.rle_to_mask(x) for x in rles], lambda: samfast_amg.rles_to_masks(rles))
    try:
        import torchvision.ops as tvo

        big = torch.cat([boxes] * (3000 // n + 1))[:3000] + 5 * torch.rand(3000, 4, generator=g)
        big_s = torch.rand(len(big), generator=g)
        bz = torch.zeros(len(big), dtype=torch.int64)
        pair("batched_nms_3000", lambda: tvo.batched_nms(big, big_s, bz, 0.7), lambda: ops.batched_nms(big, big_s, bz, 0.7))
        pair(f"batched_nms_{n}", lambda: tvo.batched_nms(boxes, scores, zeros, 0.7),
             lambda: ops.batched_nms(boxes, scores, zeros, 0.7))
    except ImportError:
        pass
    try:
        importlib.import_module("pycocotools.mask")  # the coco ops below need it

        # from list-count RLEs (both pay the Python-int conversion) ...
        pair("coco_rle", lambda: [A.coco_encode_rle(x) for x in rles], lambda: samfast_amg.coco_encode_rles(rles))
        # ... and from masks, as each generator does it (samfast keeps counts as numpy internally)
        pair("masks_to_coco_rle", lambda: [A.coco_encode_rle(x) for x in A.mask_to_rle_pytorch(masks)],
             lambda: samfast_amg.coco_encode_rles(samfast_amg.mask_to_rle(masks, as_list=False)))
    except ImportError:
        pass
    return {"masks": n, "height": h, "width": w, "ops": res}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image", default="480x640", help="HxW of the synthetic test image")
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--points-per-batch", type=int, default=64)
    p.add_argument("--crop-n-layers", type=int, default=0)
    p.add_argument("--box-nms-thresh", type=float, default=None,
                   help="default 0.7 with --checkpoint, 1.0 (keep all) with random weights")
    p.add_argument("--output-mode", default="binary_mask", choices=["binary_mask", "uncompressed_rle", "coco_rle"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--op-repeats", type=int, default=5)
    p.add_argument("--skip-e2e", action="store_true", help="only the post-processing ops")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.image.lower().split("x"))

    from sam_testing import random_image

    image = random_image(h, w, seed=0)
    result = {"device": args.device, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "image": [h, w], "points_per_side": args.points_per_side, "crop_n_layers": args.crop_n_layers,
              "build": {k: samfast._C.build_info()[k] for k in ("compiler", "openmp", "simd_runtime", "cuda")}}
    print(f"post-processing ops, {args.points_per_batch * 3} masks of {h}x{w} (median ms):")
    result["postprocess_ops"] = bench_ops(args, h, w)
    for name, r in result["postprocess_ops"]["ops"].items():
        print(f"  {name:18s} official {r['official_ms']:9.2f}  samfast {r['samfast_ms']:8.2f}  x{r['speedup']:.1f}")
    if not args.skip_e2e:
        off_model, sf_model, desc = build_models(args)
        result["model"] = desc
        e2e = bench_end_to_end(args, off_model, sf_model, image)
        result["end_to_end"] = e2e
        print(f"end to end, {desc}, {h}x{w}, {args.points_per_side}^2 points, crop_n_layers={args.crop_n_layers}:")
        for k in ("official", "samfast"):
            r = e2e[k]
            print(f"  {k:8s} {r['s_per_image']:.3f} s/image  {r['masks']} masks  {r['masks_per_s']:.1f} masks/s")
        print(f"  speedup x{e2e['speedup']:.2f}")
    write_json(args.json, result, indent=2)
    return result


if __name__ == "__main__":
    main()
