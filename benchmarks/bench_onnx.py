"""samfast's exported ONNX decoder vs the official exporter's decoder, both in onnxruntime.

Both graphs get the same random weights (vit_b-size decoder: 64x64 embeddings, 256x256 masks;
all SAM sizes share this decoder) and the same feeds. Cases: one point (+ padding point) per call,
and a loop of 64 box prompts (one call each; the contract has batch 1). Medians in ms.
`orig_im_size` defaults to 1500x2250 (2:3), the only aspect ratio the official graph crops
correctly (segment-anything issue #56); samfast's graph is right for every size.

    PYTHONPATH=python python benchmarks/bench_onnx.py [--repeats 20] [--threads N] [--image 1500x2250] [--json out.json]

`time_onnx_decoders(model_samfast, model_official, repeats)` is importable (bench_decoder uses it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from bench_common import median_ms, write_json


def time_onnx_decoders(model_samfast, model_official, repeats: int, image_hw: Tuple[int, int] = (1500, 2250),
                       num_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                       return_single_mask: bool = False) -> dict:
    """Export both decoders (same weights expected), run them in onnxruntime, return medians:

    {"cases": {"1 point": {"official_onnx": ms, "samfast_onnx": ms},
               "64 boxes, per prompt": {...}, "64 boxes, total": {...}},
     "max_rel_diff": {...}, "providers": [...], "image": [H, W], "repeats": n, "export_s": {...}}
    """
    import onnxruntime as ort

    from samfast.onnx import export_onnx
    from samfast.onnx.export import export_official_decoder
    from samfast.onnx.predictor import default_providers

    H, W = image_hw
    d = tempfile.mkdtemp(prefix="bench_onnx_")
    t0 = time.perf_counter()
    p_ours = export_onnx(model_samfast, os.path.join(d, "samfast_decoder.onnx"),
                         return_single_mask=return_single_mask, check=False)
    t1 = time.perf_counter()
    p_off = export_official_decoder(model_official, os.path.join(d, "official_decoder.onnx"),
                                    return_single_mask=return_single_mask)
    t2 = time.perf_counter()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        so.intra_op_num_threads = num_threads
    prov = list(providers) if providers else default_providers()
    sessions = {"official_onnx": ort.InferenceSession(p_off, so, providers=prov),
                "samfast_onnx": ort.InferenceSession(p_ours, so, providers=prov)}

    pe = model_samfast.prompt_encoder
    h, w = pe.image_embedding_size
    s = model_samfast.image_encoder.img_size
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1, pe.embed_dim, h, w)).astype(np.float32)
    scale = s / max(H, W)

    def feeds(coords, labels):
        return {"image_embeddings": emb, "point_coords": (np.asarray(coords, np.float32) * scale)[None],
                "point_labels": np.asarray(labels, np.float32)[None],
                "mask_input": np.zeros((1, 1, 4 * h, 4 * w), np.float32),
                "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array([H, W], np.float32)}

    point = feeds([[0.4 * W, 0.6 * H], [0, 0]], [1, -1])
    xy = rng.uniform(0, 0.5, (64, 2)) * [W, H]
    boxes = [feeds(np.concatenate([c, c + rng.uniform(0.1, 0.5, 2) * [W, H]]).reshape(2, 2), [2, 3]) for c in xy]

    diffs = {}
    for name, f in (("1 point", point), ("box", boxes[0])):
        a = sessions["official_onnx"].run(None, f)
        b = sessions["samfast_onnx"].run(None, f)
        diffs[name] = {k: float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30))
                       for k, x, y in zip(("masks", "iou_predictions", "low_res_masks"), a, b)}

    cases: Dict[str, Dict[str, float]] = {"1 point": {}, "64 boxes, per prompt": {}, "64 boxes, total": {}}
    for name, sess in sessions.items():
        cases["1 point"][name] = median_ms(lambda: sess.run(None, point), repeats)

        def loop():
            for f in boxes:
                sess.run(None, f)

        total = median_ms(loop, max(1, repeats // 10), warmup=0)  # warm from the 1-point runs
        cases["64 boxes, total"][name] = total
        cases["64 boxes, per prompt"][name] = total / 64
    for row in cases.values():
        row["official/samfast"] = row["official_onnx"] / row["samfast_onnx"]
    return {"cases": cases, "max_rel_diff": diffs, "providers": sessions["samfast_onnx"].get_providers(),
            "image": [H, W], "repeats": repeats, "threads": num_threads, "return_single_mask": return_single_mask,
            "export_s": {"samfast": round(t1 - t0, 2), "official": round(t2 - t1, 2)},
            "onnxruntime": ort.__version__}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--image", default="1500x2250", help="HxW of the original image (orig_im_size)")
    ap.add_argument("--return-single-mask", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    H, W = (int(v) for v in args.image.split("x"))
    torch.manual_seed(0)
    import segment_anything as sa

    import samfast

    official = sa.sam_model_registry[args.arch]().eval()  # random weights
    ours = samfast.load(args.arch, official.state_dict())
    res = time_onnx_decoders(ours, official, args.repeats, (H, W), args.threads,
                             return_single_mask=args.return_single_mask)
    res["arch"] = args.arch
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
    for name, row in res["cases"].items():
        print(f"{name:22s} official_onnx={row['official_onnx']:9.2f} ms  samfast_onnx={row['samfast_onnx']:9.2f} ms"
              f"  official/samfast={row['official/samfast']:.2f}x")
    print("max rel diff vs official:", json.dumps(res["max_rel_diff"]))
    write_json(args.json, res, indent=1, announce=True)
    return res


if __name__ == "__main__":
    main()
