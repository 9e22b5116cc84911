"""Native AMG ops (samfast.ops: NMS, stability, mask->box, RLE, COCO RLE, small regions) against
torchvision / segment_anything's utils / pycocotools, on edge cases and random inputs."""
import numpy as np
import pytest
import torch

import samfast
from samfast import _C, ops

amg_off = pytest.importorskip("segment_anything.utils.amg")

BACKENDS = ["kernels", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with ops.backend(request.param):
        yield request.param


def test_kernels_are_built():
    for name in ("nms", "stability_score", "mask_to_box", "rle_count", "rle_encode", "rle_decode", "rle_area",
                 "coco_rle_strings", "remove_small_regions"):
        assert hasattr(_C, f"amg_{name}_cpu"), name


# ------------------------------------------------------------------------------------ NMS


def _random_boxes(n, seed, scale=100.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, 4, generator=g, dtype=torch.float64) * scale
    b[:, 2:] += b[:, :2] * 0.3 + 1
    return b.to(dtype)


NMS_CASES = {
    "empty": (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)),
    "one": (torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([0.5]), torch.zeros(1, dtype=torch.int64)),
    "identical_ties": (torch.tensor([[0.0, 0, 10, 10]] * 6), torch.ones(6), torch.zeros(6, dtype=torch.int64)),
    "degenerate": (torch.tensor([[5.0, 5, 5, 5], [5.0, 5, 5, 5], [0, 0, 4, 4]]), torch.tensor([1.0, 1.0, 0.5]),
                   torch.zeros(3, dtype=torch.int64)),
    "categories": (torch.tensor([[0.0, 0, 10, 10]] * 4), torch.tensor([0.1, 0.9, 0.5, 0.5]),
                   torch.tensor([0, 1, 0, 1])),
}


@pytest.mark.parametrize("case", sorted(NMS_CASES))
def test_nms_edge_cases(case, backend):
    tv = pytest.importorskip("torchvision.ops")
    b, s, c = NMS_CASES[case]
    got = ops.batched_nms(b, s, c, 0.5)
    want = tv.batched_nms(b, s, c, 0.5)
    assert got.dtype == torch.int64
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("n,thr,dtype", [(50, 0.5, torch.float32), (700, 0.3, torch.float32),
                                         (1500, 0.7, torch.float32), (300, 0.5, torch.float64)])
def test_nms_random_matches_torchvision(n, thr, dtype, backend):
    tv = pytest.importorskip("torchvision.ops")
    if backend == "reference" and n > 700:
        pytest.skip("slow python loop")
    b = _random_boxes(n, n, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 5, (n,), generator=g).to(dtype)  # many exact ties
    c = torch.randint(0, 3, (n,), generator=g)
    got = ops.batched_nms(b, s, c, thr)
    want = tv.batched_nms(b, s, c, thr)
    assert sorted(got.tolist()) == sorted(want.tolist())
    assert torch.equal(s[got], s[want])  # score descending
    got0 = ops.batched_nms(b, s, torch.zeros(n, dtype=torch.int64), thr)
    assert got0.tolist() == tv.nms(b, s, thr).tolist()  # single class: same order too


def test_nms_bad_inputs():
    with pytest.raises(ValueError, match="boxes"):
        ops.batched_nms(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        ops.batched_nms(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3), 0.5)
    keep = torch.empty(3, dtype=torch.int64)
    with pytest.raises(TypeError, match="boxes"):  # C++ validation
        _C.amg_nms_cpu(ops.tensor_ref(torch.zeros(3, 4, dtype=torch.int32)), ops.tensor_ref(torch.zeros(3)),
                       ops.tensor_ref(torch.zeros(3, dtype=torch.int64)), ops.tensor_ref(keep), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        _C.amg_nms_cpu(ops.tensor_ref(torch.zeros(3, 4)), ops.tensor_ref(torch.zeros(3)),
                       ops.tensor_ref(torch.zeros(2, dtype=torch.int64)), ops.tensor_ref(keep), 0.5)


# ------------------------------------------------------------------------ stability / boxes


@pytest.mark.parametrize("shape", [(5, 33, 47), (1, 1, 1), (2, 3, 4, 9, 7), (4, 64, 64), (0, 8, 8)])
def test_stability_score_matches_official(shape, backend):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(*shape, generator=g) * 2
    if m.numel():
        m.view(-1, *shape[-2:])[0] = 5.0  # all above both thresholds
        if m.shape[-3] > 1:
            m.view(-1, *shape[-2:])[1] = -5.0  # all below: 0 / 0 = nan
    got = ops.stability_score(m, 0.0, 1.0)
    want = amg_off.calculate_stability_score(m, 0.0, 1.0)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())


def test_stability_score_int16_wrap_and_bf16(backend):
    m = torch.full((1, 2, 40000), 3.0)  # per-row count overflows int16 exactly like the official
    torch.testing.assert_close(ops.stability_score(m, 0.0, 1.0), amg_off.calculate_stability_score(m, 0.0, 1.0),
                               equal_nan=True)
    b = (torch.randn(3, 20, 30) * 2).bfloat16()
    torch.testing.assert_close(ops.stability_score(b, 0.1, 0.7), amg_off.calculate_stability_score(b, 0.1, 0.7),
                               rtol=0, atol=0)


def _masks_cases():
    g = torch.Generator().manual_seed(3)
    r = torch.rand(6, 37, 53, generator=g) > 0.97
    r[0] = False
    r[1] = True
    r[2] = False
    r[2, 36, 52] = True
    r[3] = False
    r[3, 0, 0] = True
    return {"random_odd": r, "one_by_one": torch.tensor([[[True]], [[False]]]),
            "wide": torch.rand(2, 3, 300, generator=g) > 0.99, "blob": torch.rand(3, 64, 48, generator=g) > 0.4}


@pytest.mark.parametrize("case", sorted(_masks_cases()))
def test_mask_to_box_matches_official(case, backend):
    m = _masks_cases()[case]
    got = ops.mask_to_box(m)
    want = amg_off.batched_mask_to_box(m)
    assert got.dtype == want.dtype and torch.equal(got, want)
    assert torch.equal(ops.mask_to_box(m.reshape(1, *m.shape)), want[None])  # leading dims
    assert torch.equal(ops.mask_to_box(m[0]), want[0])  # a single HxW mask


def test_mask_to_box_empty_input():
    m = torch.zeros(0, 5, 5, dtype=torch.bool)
    assert torch.equal(ops.mask_to_box(m), amg_off.batched_mask_to_box(m))


# ------------------------------------------------------------------------------------- RLE


@pytest.mark.parametrize("case", sorted(_masks_cases()))
def test_rle_roundtrip_matches_official(case, backend):
    m = _masks_cases()[case]
    h, w = m.shape[1:]
    counts, offsets = ops.rle_encode(m)
    want = amg_off.mask_to_rle_pytorch(m)
    for i, r in enumerate(want):
        assert counts[offsets[i]: offsets[i + 1]].tolist() == r["counts"]
    dec = ops.rle_decode(counts, offsets, h, w)
    assert dec.dtype == torch.bool and torch.equal(dec, m)
    assert ops.rle_area(counts, offsets).tolist() == [amg_off.area_from_rle(r) for r in want]
    assert ops.coco_rle_strings(counts, offsets) == ops.coco_rle_strings_reference(counts, offsets)


def test_rle_helpers_match_official():
    from samfast.utils import amg

    m = _masks_cases()["blob"]
    rles = amg.mask_to_rle_pytorch(m)
    assert rles == amg_off.mask_to_rle_pytorch(m)
    for r in rles:
        assert np.array_equal(amg.rle_to_mask(r), amg_off.rle_to_mask(r))
        assert amg.area_from_rle(r) == amg_off.area_from_rle(r)


def test_rle_decode_rejects_bad_counts(backend):
    with pytest.raises(ValueError, match="sum"):
        ops.rle_decode(torch.tensor([3, 4]), torch.tensor([0, 2]), 2, 3)
    with pytest.raises(ValueError):
        ops.rle_decode(torch.tensor([8, -2]), torch.tensor([0, 2]), 2, 3)


def test_coco_rle_decodes_with_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    from samfast.utils import amg

    g = torch.Generator().manual_seed(5)
    m = torch.rand(4, 123, 77, generator=g) > 0.5
    m[0] = True
    m[1] = False
    m[2, :, :40] = True  # long runs: multi-char deltas, negative deltas
    rles = amg.mask_to_rle(m)
    for r, coco in zip(rles, amg.coco_encode_rles(rles)):
        ref = mask_utils.frPyObjects(r, *r["size"])
        assert coco["counts"] == ref["counts"].decode("utf-8") and coco["size"] == [123, 77]
        back = mask_utils.decode({"size": coco["size"], "counts": coco["counts"].encode()})
        assert np.array_equal(back.astype(bool), amg.rle_to_mask(r))
        assert int(mask_utils.area(ref)) == amg.area_from_rle(r)


# ---------------------------------------------------------------------------- small regions


def test_remove_small_regions_hand_made(backend):
    m = torch.zeros(1, 12, 12, dtype=torch.bool)
    m[0, 1:9, 1:9] = True
    m[0, 4, 4] = False            # 1-pixel hole
    m[0, 10, 10] = True           # 1-pixel island
    m[0, 9, 9] = True             # touches the square diagonally (8-connected)
    filled, ch = ops.remove_small_regions(m, 3, "holes")
    assert bool(ch[0]) and bool(filled[0, 4, 4]) and int(filled.sum()) == int(m.sum()) + 1
    kept, ch = ops.remove_small_regions(m, 3, "islands")
    assert not bool(ch[0]) and torch.equal(kept, m)  # diagonal chain is one component
    m[0, 9, 9] = False
    kept, ch = ops.remove_small_regions(m, 3, "islands")
    assert bool(ch[0]) and not bool(kept[0, 10, 10]) and int(kept.sum()) == int(m.sum()) - 1
    only_small = torch.zeros(1, 6, 6, dtype=torch.bool)
    only_small[0, 0, 0] = only_small[0, 3, 3] = only_small[0, 3, 4] = True
    kept, ch = ops.remove_small_regions(only_small, 10, "islands")  # all small: the largest stays
    assert bool(ch[0]) and kept[0].nonzero().tolist() == [[3, 3], [3, 4]]
    empty = torch.zeros(2, 5, 7, dtype=torch.bool)
    out, ch = ops.remove_small_regions(empty, 4, "islands")
    assert torch.equal(out, empty) and not ch.any()


@pytest.mark.parametrize("mode", ["holes", "islands"])
def test_remove_small_regions_kernel_vs_reference(mode):
    g = torch.Generator().manual_seed(7)
    m = torch.rand(5, 31, 45, generator=g) > 0.55
    got, ch = ops.remove_small_regions(m, 6, mode)
    with ops.backend("reference"):
        want, ch_ref = ops.remove_small_regions(m, 6, mode)
    assert torch.equal(got, want) and torch.equal(ch, ch_ref)


def test_remove_small_regions_vs_cv2_if_present():
    pytest.importorskip("cv2")
    from samfast.utils import amg

    g = torch.Generator().manual_seed(11)
    m = (torch.rand(40, 50, generator=g) > 0.5).numpy()
    for mode in ("holes", "islands"):
        a, ca = amg.remove_small_regions(m, 5, mode)
        b, cb = amg_off.remove_small_regions(m, 5, mode)
        assert ca == cb and np.array_equal(a, b)


def test_custom_ops_trace_with_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        m = torch.empty(3, 8, 9)
        assert ops._amg_stability_op(m, 1.0, -1.0).shape == (3,)
        assert ops._amg_mask_to_box_op(m > 0).shape == (3, 4)
    assert samfast.SamAutomaticMaskGenerator is not None


# ------------------------------------------------------------------------------ CUDA vs CPU


@pytest.mark.cuda
def test_cuda_ops_match_cpu():
    if not hasattr(_C, "amg_nms_cuda"):
        pytest.skip("samfast._C was built without CUDA")
    dev = torch.device("cuda")
    for n, thr in ((0, 0.5), (1, 0.5), (300, 0.5), (2500, 0.7)):
        b = _random_boxes(n, n)
        g = torch.Generator().manual_seed(2)
        s = torch.randint(0, 7, (n,), generator=g).float()
        c = torch.randint(0, 2, (n,), generator=g)
        want = ops.batched_nms(b, s, c, thr)
        got = ops.batched_nms(b.to(dev), s.to(dev), c.to(dev), thr)
        assert got.device.type == "cuda" and got.cpu().tolist() == want.tolist()
    for shape in ((5, 33, 47), (3, 2, 40000), (2, 1, 1), (0, 4, 4)):
        m = torch.randn(*shape) * 2
        torch.testing.assert_close(ops.stability_score(m.to(dev), 0.0, 1.0).cpu(), ops.stability_score(m, 0.0, 1.0),
                                   rtol=0, atol=0, equal_nan=True)
        mb = m.bfloat16()
        torch.testing.assert_close(ops.stability_score(mb.to(dev), 0.0, 1.0).cpu(),
                                   ops.stability_score(mb, 0.0, 1.0), rtol=0, atol=0, equal_nan=True)
    for case, m in _masks_cases().items():
        assert torch.equal(ops.mask_to_box(m.to(dev)).cpu(), ops.mask_to_box(m)), case
        counts, offsets = ops.rle_encode(m.to(dev))
        want_c, want_o = ops.rle_encode(m)
        assert torch.equal(counts.cpu(), want_c) and torch.equal(offsets.cpu(), want_o), case


def test_custom_ops_pass_opcheck():
    m = torch.randn(4, 9, 11)
    b = m > 0.3
    c, o = ops.rle_encode(b)
    bx = _random_boxes(20, 0)
    cases = [(ops._amg_stability_op, (m, 1.0, -1.0)), (ops._amg_mask_to_box_op, (b,)),
             (ops._amg_nms_op, (bx, torch.rand(20), torch.zeros(20, dtype=torch.int64), 0.5)),
             (ops._amg_rle_encode_op, (b,)), (ops._amg_rle_decode_op, (c, o, 9, 11)), (ops._amg_rle_area_op, (c, o)),
             (ops._amg_coco_op, (c, o)), (ops._amg_remove_small_regions_op, (b, 3.0, True))]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_rle_encode_rejects_wrong_offsets():
    m = torch.zeros(2, 3, 3, dtype=torch.bool)
    m[0, 1, 1] = True  # 3 counts; mask 1 has 1
    for bad in ([0, 2, 3], [0, 3, 5]):
        offsets = torch.tensor(bad)
        counts = torch.empty(int(offsets[-1]), dtype=torch.int64)
        with pytest.raises(ValueError, match="rle_count"):
            _C.amg_rle_encode_cpu(ops.tensor_ref(m), ops.tensor_ref(offsets), ops.tensor_ref(counts))
