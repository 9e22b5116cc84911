"""samfast.Session: segment / track over frame streams, BGR/RGB, tensor frames, async encode, leaks."""
import gc
import threading
import time

import numpy as np
import pytest
import torch

import samfast
from sam_testing import TINY, make_checkpoint, random_image

LOOP_CFG = samfast.SamConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), image_size=128,
                             name="loop")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    _, path = make_checkpoint(tmp_path_factory.mktemp("ckpt"), TINY)
    return samfast.load("auto", path)


def frames(n, h=96, w=128):
    """A slowly moving scene: the same blobs shifted by 2 px per frame."""
    base = random_image(h, w, seed=3)
    return [np.roll(base, 2 * i, axis=1) for i in range(n)]


def same(a, b):
    assert [d.object_id for d in a] == [d.object_id for d in b]
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x.mask), np.asarray(y.mask))
        assert x.score == pytest.approx(y.score, abs=1e-5)
        np.testing.assert_allclose(np.asarray(x.box), np.asarray(y.box))


def test_segment_matches_predictor(model):
    img = random_image(96, 128, seed=1)
    pred = samfast.SamPredictor(model)
    pred.set_image(img)
    masks, scores, low = pred.predict(np.array([[60, 40]]), np.array([1]), multimask_output=False)
    with samfast.Session(model) as s:
        s.set_frame(img)
        dets = s.segment(points=[[60, 40]])
        assert len(dets) == 1 and s.frame_index == 0
        d = dets[0]
        assert isinstance(d, samfast.Detection) and d.object_id == 0
        assert d.mask.dtype == np.bool_ and d.mask.shape == (96, 128)
        assert np.array_equal(d.mask, masks[0])
        assert d.score == pytest.approx(float(scores[0]), abs=1e-5)
        assert d.low_res_logits.shape == low.shape == (1, 4 * TINY.image_size // 16, 4 * TINY.image_size // 16)
        if d.mask.any():
            ys, xs = np.nonzero(d.mask)
            np.testing.assert_array_equal(d.box, [xs.min(), ys.min(), xs.max(), ys.max()])
        # several objects at once: boxes Bx4 and batched points BxNx2; ids keep counting
        dets = s.segment(boxes=[[10, 10, 60, 50], [40, 30, 120, 90]])
        assert [d.object_id for d in dets] == [1, 2]
        dets = s.segment(points=[[[20, 20]], [[100, 70]]], labels=[[1], [1]], multimask_output=True)
        assert [d.object_id for d in dets] == [3, 4]
        with pytest.raises(ValueError):
            s.segment()
        with pytest.raises(ValueError):
            s.segment(points=[[1, 2]], labels=[1, 0])


def test_bgr_equals_rgb_and_tensor_frames(model):
    img = random_image(96, 128, seed=2)
    with samfast.Session(model) as s:
        s.set_frame(img)
        rgb = s.segment(points=[[50, 50]], boxes=[[20, 20, 90, 80]])
        s.set_frame(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
        bgr = s.segment(points=[[50, 50]], boxes=[[20, 20, 90, 80]])
        for a, b in zip(rgb, bgr):
            assert np.array_equal(a.mask, b.mask) and a.score == b.score
        # tensor frames stay tensors (HxWx3 uint8 and 3xHxW float give the same result)
        t = torch.from_numpy(img)
        s.set_frame(t)
        a = s.segment(points=[[50, 50]])[0]
        assert isinstance(a.mask, torch.Tensor) and a.mask.dtype == torch.bool and a.mask.shape == (96, 128)
        s.set_frame(t.flip(-1).permute(2, 0, 1).float(), image_format="BGR")
        b = s.segment(points=[[50, 50]])[0]
        assert torch.equal(a.mask, b.mask) and a.score == pytest.approx(b.score, abs=1e-6)
        # the resize differs (antialiased torch vs PIL) but the result is close to the numpy path
        s.set_frame(img)
        c = s.segment(points=[[50, 50]])[0]
        assert abs(c.score - a.score) < 0.05
        with pytest.raises(ValueError):
            s.set_frame(img[..., :2])
        with pytest.raises(ValueError):
            s.set_frame(img.astype(np.float32))
        with pytest.raises(TypeError):
            s.set_frame([[1, 2, 3]])
        with pytest.raises(ValueError):
            s.set_frame(img, image_format="HSV")


def test_tracking_keeps_ids(model):
    fr = frames(4)
    with samfast.Session(model, track=True, use_mask_input=True, score_threshold=-1e9) as s:
        with pytest.raises(RuntimeError):
            s.track()                                   # no frame yet
        s.set_frame(fr[0])
        first = s.segment(boxes=[[10, 10, 60, 50], [60, 30, 120, 90]])
        assert [d.object_id for d in first] == [0, 1]
        alive = {d.object_id for d in first if d.mask.any()}
        assert set(s.tracks) == alive
        for f in fr[1:]:
            s.set_frame(f)
            dets = s.track()
            ids = [d.object_id for d in dets]
            assert ids == sorted(ids) and set(ids) <= alive      # stable ids, never new ones
            assert all(d.mask.any() for d in dets)
            alive = set(ids)
        # a frame of another size: boxes are rescaled to it
        s.set_frame(np.ascontiguousarray(fr[0][::2, ::2]))
        for d in s.track():
            assert d.mask.shape == (48, 64) and d.box[2] <= 63 and d.box[3] <= 47
        # segment() without prompts propagates too; new objects get fresh ids
        alive = set(s.tracks)
        s.set_frame(fr[0])
        assert {d.object_id for d in s.segment()} <= alive
        assert [d.object_id for d in s.segment(points=[[30, 30]])] == [2]
        # objects whose score falls under the threshold are dropped
        s.score_threshold = float("inf")
        s.set_frame(fr[1])
        assert s.track() == [] and s.tracks == {}
    with samfast.Session(model) as s:
        s.set_frame(fr[0])
        with pytest.raises(RuntimeError):
            s.track()                                   # track=False


def run_stream(model, fr, async_encode):
    out = []
    with samfast.Session(model, track=True, score_threshold=-1e9, async_encode=async_encode) as s:
        s.submit(fr[0])
        for i in range(len(fr)):
            if i + 1 < len(fr):
                s.submit(fr[i + 1])                     # encoder of frame i+1 overlaps decoding of frame i
            if i == 0:
                out.append(s.segment(boxes=[[10, 10, 60, 50], [60, 30, 120, 90]]))
            else:
                out.append(s.track())
            out.append(s.segment(points=[[40, 40]], advance=False))
        assert s.pending == 0 and s.frame_index == len(fr) - 1
    return out


def test_async_matches_sync(model):
    fr = frames(4)
    base = threading.active_count()
    sync = run_stream(model, fr, async_encode=False)
    asy = run_stream(model, fr, async_encode=True)
    assert threading.active_count() == base
    assert len(sync) == len(asy)
    for a, b in zip(sync, asy):
        same(a, b)
    with samfast.Session(model, async_encode=True) as s:
        s.submit(fr[0])
        with pytest.raises(RuntimeError):
            s.set_frame(fr[1])                          # frames pending
        assert len(s.segment(points=[[5, 5]])) == 1
    assert threading.active_count() == base
    with pytest.raises(RuntimeError):
        s.submit(fr[0])                                 # closed


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_500_frame_loop_no_leak():
    torch.manual_seed(0)
    model = samfast.load(LOOP_CFG)
    rng = np.random.default_rng(0)
    base_img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    fr = [np.roll(base_img, i % 64, axis=1) for i in range(8)]
    base_threads = threading.active_count()
    t0 = time.perf_counter()
    rss = {}
    with samfast.Session(model, track=True, use_mask_input=True, async_encode=True, score_threshold=-1e9) as s:
        s.submit(fr[0])
        for i in range(500):
            s.submit(fr[(i + 1) % len(fr)])
            dets = s.track()
            if not dets:
                dets = s.segment(boxes=[[5, 5, 30, 30], [30, 10, 60, 45]], advance=False)
            assert all(d.mask.shape == (48, 64) for d in dets)
            if i in (100, 499):
                gc.collect()
                rss[i] = rss_mb()
        assert threading.active_count() == base_threads + 1     # the one encode worker
    assert threading.active_count() == base_threads
    elapsed = time.perf_counter() - t0
    assert rss[499] - rss[100] < 25, f"RSS grew {rss[499] - rss[100]:.1f} MiB over 400 frames"
    assert elapsed < 120, f"500 frames took {elapsed:.1f}s"
