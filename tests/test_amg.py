"""samfast.SamAutomaticMaskGenerator vs the official one (same randomised weights), output modes,
small-region removal, progress, and the `samfast amg` CLI."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import samfast
from sam_testing import TINY, make_checkpoint, random_image

official = pytest.importorskip("segment_anything")
pytest.importorskip("torchvision")  # the official generator needs it (samfast does not)
from segment_anything.utils.amg import rle_to_mask as off_rle_to_mask  # noqa: E402

LOW = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)  # random weights: keep masks alive
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amg")
    off_model, path = make_checkpoint(tmp, TINY)
    sf_model = samfast.load("auto", path)
    return off_model, sf_model, path, random_image(128, 160, seed=1)


def _masks(anns):
    if not anns:
        return np.zeros((0, 1, 1), bool)
    seg = anns[0]["segmentation"]
    if isinstance(seg, np.ndarray):
        return np.stack([a["segmentation"] for a in anns])
    return np.stack([off_rle_to_mask(a["segmentation"]) for a in anns])


def assert_same_masks(a, b, min_count=1):
    """Same number of masks and a one-to-one match by mask IoU > 0.99, with matching records."""
    assert len(a) == len(b) >= min_count
    ma, mb = _masks(a), _masks(b)
    fa, fb = ma.reshape(len(a), -1).astype(np.float32), mb.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    assert (iou.max(1) > 0.99).all() and (iou.max(0) > 0.99).all()
    for i, j in enumerate(iou.argmax(1)):
        ra, rb = a[i], b[j]
        assert ra["crop_box"] == rb["crop_box"]
        assert abs(ra["area"] - rb["area"]) <= 0.01 * max(ra["area"], 1)
        assert np.allclose(ra["bbox"], rb["bbox"], atol=2)
        assert abs(ra["predicted_iou"] - rb["predicted_iou"]) < 1e-3
        assert abs(ra["stability_score"] - rb["stability_score"]) < 2e-2


def run_both(setup, **kw):
    off_model, sf_model, _, image = setup
    a = official.SamAutomaticMaskGenerator(off_model, **kw).generate(image)
    b = samfast.SamAutomaticMaskGenerator(sf_model, **kw).generate(image)
    return a, b


def test_matches_official_no_nms(setup):
    a, b = run_both(setup, points_per_side=6, box_nms_thresh=1.0, output_mode="uncompressed_rle", **LOW)
    assert_same_masks(a, b, min_count=50)
    assert sorted(map(str, (r["point_coords"] for r in a))) == sorted(map(str, (r["point_coords"] for r in b)))


def test_matches_official_with_filters_and_nms(setup):
    a, b = run_both(setup, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.25,
                    output_mode="uncompressed_rle")
    assert_same_masks(a, b)


def test_matches_official_with_crops(setup):
    a, b = run_both(setup, points_per_side=4, crop_n_layers=1, box_nms_thresh=1.0, crop_nms_thresh=1.0,
                    output_mode="uncompressed_rle", **LOW)
    assert_same_masks(a, b, min_count=40)


# Random weights give near-full-image masks, so crops, NMS and small regions are also checked with a
# synthetic decoder (disks of 3 radii around each point + a texture, on the low-res grid; scores from the
# point), installed on both generators: the pipelines must then agree exactly. The official side gets
# the low-res logits upsampled by samfast.ops.postprocess_masks (the same floats the fused AMG pass
# computes), so any difference is in the pipeline, not float rounding; the real-model tests above cover
# the rounding against the official F.interpolate.


def _synthetic_low_res(predictor, point_coords):
    S = predictor.model.image_encoder.img_size
    n = S // 4
    pts = point_coords[:, 0, :].double()                          # input frame (longest side = S)
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * (S / n) - 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    texture = 1.5 * torch.sin(xx / 2.1) * torch.cos(yy / 2.9)
    radii = torch.tensor([0.1, 0.22, 0.4], dtype=torch.float64) * S
    d = ((xx[None] - pts[:, 0, None, None]) ** 2 + (yy[None] - pts[:, 1, None, None]) ** 2).sqrt()
    low = ((radii[None, :, None, None] - d[:, None]) / 3 + texture).float()      # [B, 3, n, n]
    iou = torch.round((pts.sum(1, keepdim=True) * 0.0137 + torch.arange(3) * 0.31) % 1.0, decimals=2).float()
    return low, iou


def _install_synthetic(gen):
    predictor = gen.predictor
    if hasattr(predictor, "predict_low_res_torch"):  # samfast: the generator asks for low-res logits
        def predict_low_res_torch(point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True):
            return _synthetic_low_res(predictor, point_coords)

        predictor.predict_low_res_torch = predict_low_res_torch
        return

    def predict_torch(point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                      return_logits=False):
        low, iou = _synthetic_low_res(predictor, point_coords)
        logits = samfast.ops.postprocess_masks(low, predictor.model.image_encoder.img_size, predictor.input_size,
                                               predictor.original_size)
        return (logits if return_logits else logits > 0), iou, low

    predictor.predict_torch = predict_torch


def run_both_synthetic(setup, **kw):
    off_model, sf_model, _, image = setup
    out = []
    for gen in (official.SamAutomaticMaskGenerator(off_model, **kw), samfast.SamAutomaticMaskGenerator(sf_model, **kw)):
        _install_synthetic(gen)
        out.append(gen.generate(image))
    return out


def assert_identical(a, b, min_count=1):
    assert len(a) == len(b) >= min_count
    key = lambda r: (r["point_coords"], r["predicted_iou"], r["crop_box"], r["bbox"])  # noqa: E731
    for ra, rb in zip(sorted(a, key=key), sorted(b, key=key)):
        assert ra["segmentation"] == rb["segmentation"]
        assert {k: v for k, v in ra.items() if k != "segmentation"} == \
            {k: v for k, v in rb.items() if k != "segmentation"}


@pytest.mark.parametrize("kw", [
    dict(points_per_side=8, pred_iou_thresh=0.3, stability_score_thresh=0.6),
    dict(points_per_side=4, crop_n_layers=1, pred_iou_thresh=0.2, stability_score_thresh=0.5,
         crop_n_points_downscale_factor=2),
], ids=["nms", "crops"])
def test_pipeline_matches_official_synthetic(setup, kw):
    a, b = run_both_synthetic(setup, output_mode="uncompressed_rle", **kw)
    assert_identical(a, b, min_count=5)
    if kw.get("crop_n_layers"):
        assert len({tuple(r["crop_box"]) for r in b}) > 1


def test_fused_pass_chunking_keeps_the_same_masks(setup, monkeypatch):
    """Memory-bounded chunks of the fused mask pass (here one mask per chunk) change nothing."""
    import samfast.automatic_mask_generator as amg_mod

    _, sf_model, _, image = setup
    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.3, box_nms_thresh=1.0,
              output_mode="uncompressed_rle")
    want = samfast.SamAutomaticMaskGenerator(sf_model, **kw).generate(image)
    monkeypatch.setattr(amg_mod, "FUSED_PASS_BYTES", 1)
    got = samfast.SamAutomaticMaskGenerator(sf_model, **kw).generate(image)
    assert len(want) > 0
    assert_identical(want, got)


def _fake_cv2():
    """cv2.connectedComponentsWithStats(mask, 8) by pure-torch label propagation (labels in raster order
    of each component's first pixel), so the official small-region path runs without OpenCV."""

    def connected_components_with_stats(working, connectivity):
        assert connectivity == 8
        work = torch.as_tensor(working.astype(bool))
        h, w = work.shape
        lab = torch.where(work, torch.arange(h * w).reshape(h, w), h * w)
        while True:
            nxt = -torch.nn.functional.max_pool2d(-lab[None, None].double(), 3, 1, 1)[0, 0].long()
            nxt = torch.where(work, torch.minimum(nxt, lab), h * w)
            if torch.equal(nxt, lab):
                break
            lab = nxt
        _, inv, sizes = torch.unique(lab[work], return_inverse=True, return_counts=True)
        regions = torch.zeros(h, w, dtype=torch.int64)
        regions[work] = inv + 1
        stats = np.zeros((len(sizes) + 1, 5), np.int64)
        stats[0, -1] = int((~work).sum())
        stats[1:, -1] = sizes.numpy()
        return len(sizes) + 1, regions.numpy(), stats, None

    return types.SimpleNamespace(connectedComponentsWithStats=connected_components_with_stats)


def test_matches_official_min_mask_region_area(setup, monkeypatch):
    try:
        import cv2  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "cv2", _fake_cv2())
    a, b = run_both_synthetic(setup, points_per_side=3, min_mask_region_area=25, pred_iou_thresh=0.2,
                              stability_score_thresh=0.3, output_mode="uncompressed_rle")
    assert_identical(a, b, min_count=5)


def test_output_modes_agree(setup):
    _, sf_model, _, image = setup
    out = {m: samfast.SamAutomaticMaskGenerator(sf_model, points_per_side=4, box_nms_thresh=1.0, output_mode=m,
                                                **LOW).generate(image) for m in
           ("binary_mask", "uncompressed_rle", "coco_rle")}
    binary, unc, coco = out["binary_mask"], out["uncompressed_rle"], out["coco_rle"]
    assert len(binary) == len(unc) == len(coco) > 0
    for rb, ru, rc in zip(binary, unc, coco):
        seg = rb["segmentation"]
        assert seg.dtype == bool and seg.shape == image.shape[:2]
        assert np.array_equal(seg, off_rle_to_mask(ru["segmentation"]))
        assert type(ru["segmentation"]["counts"]) is list and ru["segmentation"]["size"] == list(seg.shape)
        assert rb["area"] == ru["area"] == rc["area"] == int(seg.sum())
        assert isinstance(rc["segmentation"]["counts"], str) and rc["segmentation"]["size"] == list(seg.shape)
        assert {k: v for k, v in rb.items() if k != "segmentation"} == {k: v for k, v in rc.items()
                                                                      if k != "segmentation"}
    json.dumps([{k: v for k, v in r.items()} for r in coco])  # COCO records serialise as-is
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return
    for rb, rc in zip(binary, coco):
        seg = rc["segmentation"]
        dec = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        assert np.array_equal(dec.astype(bool), rb["segmentation"])


def test_progress_bar_only_on_a_tty(monkeypatch):
    import io

    from samfast.automatic_mask_generator import _make_bar, _NoBar

    pytest.importorskip("tqdm")

    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(_make_bar(True, 3, "x"), _NoBar) and isinstance(_make_bar(None, 3, "x"), _NoBar)
    tty = TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert isinstance(_make_bar(False, 3, "x"), _NoBar)
    bar = _make_bar(None, 3, "amg-test")
    assert not isinstance(bar, _NoBar)
    bar.update(3)
    bar.close()
    assert "amg-test" in tty.getvalue()


def test_progress_and_argument_errors(setup, capsys):
    _, sf_model, _, image = setup
    pytest.importorskip("tqdm")
    anns = samfast.SamAutomaticMaskGenerator(sf_model, points_per_side=2, progress=True, **LOW).generate(image)
    assert isinstance(anns, list)
    samfast.SamAutomaticMaskGenerator(sf_model, points_per_side=2, progress=False, **LOW).generate(image)
    with pytest.raises(ValueError, match="output_mode"):
        samfast.SamAutomaticMaskGenerator(sf_model, output_mode="png")
    with pytest.raises(ValueError, match="Exactly one"):
        samfast.SamAutomaticMaskGenerator(sf_model, points_per_side=None)
    with pytest.raises(ValueError, match="HxWx3"):
        samfast.SamAutomaticMaskGenerator(sf_model, points_per_side=2).generate(image[..., 0])


# ------------------------------------------------------------------------------------ CLI


def _cli(*args, cwd):
    env = dict(os.environ)  # the samfast under test: installed, or the dev tree via the caller's PYTHONPATH
    return subprocess.run([sys.executable, "-m", "samfast.amg_cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_json_and_png_and_resumes(setup, tmp_path):
    from PIL import Image

    _, _, ckpt, image = setup
    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray(image).save(src / "a.png")
    Image.fromarray(image[:100, :90]).save(src / "b.jpg")
    out = tmp_path / "out"
    args = [src, "-o", out, "--checkpoint", ckpt, "--points-per-side", 3, "--pred-iou-thresh", 0,
            "--stability-score-thresh", 0]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for stem, (h, w) in (("a", image.shape[:2]), ("b", (100, 90))):
        doc = json.loads((out / f"{stem}.json").read_text())
        assert (doc["height"], doc["width"]) == (h, w) and len(doc["annotations"]) > 0
        seg = doc["annotations"][0]["segmentation"]
        assert seg["size"] == [h, w] and isinstance(seg["counts"], str)
        assert Image.open(out / f"{stem}.png").size == (w, h)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    before = (out / "a.json").stat().st_mtime_ns
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0 and "skipping 2" in r.stderr
    assert (out / "a.json").stat().st_mtime_ns == before


def test_cli_errors_are_one_line(setup, tmp_path):
    from samfast.amg_cli import amg_main

    _, _, ckpt, _ = setup
    cases = [
        ([str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt)], "no such file"),
        ([str(tmp_path), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt)], "no images"),
        ([str(ckpt), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "nope.pth")], "checkpoint not found"),
        ([str(ckpt), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--points-per-side", "0"], ">= 1"),
        ([str(ckpt), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--points-per-side", "x"], "invalid int"),
        ([str(ckpt)], "required"),
    ]
    for argv, msg in cases:
        with pytest.raises(SystemExit) as e:
            amg_main(argv)
        text = str(e.value.code)
        assert text.startswith("samfast amg: error:") and msg in text and "\n" not in text, text
