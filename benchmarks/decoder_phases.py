"""Phase breakdown of SamPredictor.predict on the CPU (run through benchmarks/decoder_phases.sh).

Random official vit_b weights and a random 64x64 image embedding (timings do not depend on the values); a
768x1024 original image; one prompt per call. Prints the C++ phase means (stderr, from a build with
SAMFAST_PHASE_TIMERS) and the median of whole `predict` calls, plus the Python-side parts measured separately."""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch


def median_ms(fn, repeats, warmup=5):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", choices=["point", "box", "point+box"], default="point")
    ap.add_argument("--single-mask", action="store_true", help="multimask_output=False")
    ap.add_argument("--calls", type=int, default=500, help="calls per phase report")
    args = ap.parse_args()
    os.environ["SAMFAST_PHASE_REPORT"] = str(args.calls)
    import samfast
    from samfast import ops
    import segment_anything as sa

    torch.manual_seed(0)
    official = sa.sam_model_registry["vit_b"]().eval()
    predictor = samfast.SamPredictor(samfast.load("vit_b", official.state_dict()))
    predictor.original_size = predictor.input_size = (768, 1024)
    predictor.features = torch.randn(1, 256, 64, 64)
    predictor.is_image_set = True
    predictor._decoder_cache = None
    pts = np.array([[500.0, 300.0]]) if "point" in args.prompt else None
    lbs = np.array([1]) if pts is not None else None
    box = np.array([100.0, 120.0, 600.0, 500.0]) if "box" in args.prompt else None
    mm = not args.single_mask
    _, _, low = predictor.predict(pts, lbs, box, multimask_output=mm)  # builds the per-image cache
    low = torch.from_numpy(low)[None]
    print(f"samfast {samfast.__version__}, prompt {args.prompt}, multimask {mm}, torch threads {torch.get_num_threads()}")
    print("(the C++ timers report every --calls calls: the first report covers warm-up calls, the second the timed ones)")
    sys.stdout.flush()
    # warm-up ends on the first report's boundary (the call above was the first), so the second report is clean
    total = median_ms(lambda: predictor.predict(pts, lbs, box, multimask_output=mm), args.calls, args.calls - 1)
    sys.stderr.flush()
    post = median_ms(lambda: ops.postprocess_masks(low, 1024, (768, 1024), (768, 1024), 0.0), args.calls)
    print(f"predict (whole call)                                      {total:8.3f} ms")
    print(f"  of which post-processing to 768x1024 (separately)       {post:8.3f} ms")


if __name__ == "__main__":
    main()
