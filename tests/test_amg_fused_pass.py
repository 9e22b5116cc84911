"""Fused AMG mask pass (samfast.ops.postprocess_masks_stats): low-res logits -> bool masks at the crop
size + stability score + box, one pass. Checked three ways:
  * exactly against the unfused pipeline run on the same float32 upsampled logits (postprocess kernel
    -> segment_anything's calculate_stability_score / batched_mask_to_box);
  * against a float64 reference, where only pixels within rounding distance of a threshold may differ;
  * edge cases (empty / full / one-pixel masks, widths below and around the SIMD width) and bad input.
"""
import pytest
import torch

from samfast import _C, ops

amg_off = pytest.importorskip("segment_anything.utils.amg")

pytestmark = pytest.mark.skipif(not hasattr(_C, "postprocess_masks_stats_cpu"), reason="kernel not built")

# (N, h, w, img_size, input_size, original_size)
CASES = [
    (6, 64, 64, 256, (192, 256), (480, 640)),   # SAM-like: low-res covers a padded square, landscape crop
    (5, 17, 23, 68, (68, 41), (131, 79)),       # odd sizes, portrait
    (3, 9, 6, 36, (30, 36), (7, 5)),            # output narrower than one AVX2 vector, downsizing
    (4, 12, 12, 48, (48, 48), (33, 17)),        # W0 = 2 vectors + 1
    (2, 40, 30, 120, (120, 77), (120, 77)),     # identity second stage
]
THR, OFFSET = 0.0, 1.0


def make_logits(N, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.randn(N, 1, max(2, h // 4), max(2, w // 4), generator=g) * 4,
                                             (h, w), mode="bilinear", align_corners=False)[:, 0]
    x = smooth + 0.5 * torch.randn(N, h, w, generator=g)
    x[0] = -8.0                # empty mask: stability 0 / 0, box zeros
    if N > 2:
        x[1] = 5.0             # every pixel on
    return x


def fused(x, case):
    _, _, _, img, inp, orig = case
    return ops.postprocess_masks_stats(x, img, inp, orig, THR, OFFSET)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_equals_unfused_pipeline_on_same_floats(case, simd):
    N, h, w, img, inp, orig = case
    x = make_logits(N, h, w, seed=N)
    masks, stab, boxes = fused(x, case)
    up = ops._postprocess_masks_op(x[:, None].contiguous(), img, inp[0], inp[1], orig[0], orig[1], 0.0, False)[:, 0]
    assert masks.shape == (N, *orig) and masks.dtype == torch.bool
    assert torch.equal(masks, up > THR)
    torch.testing.assert_close(stab, amg_off.calculate_stability_score(up, THR, OFFSET).float(), rtol=0, atol=0,
                               equal_nan=True)
    assert torch.equal(boxes, amg_off.batched_mask_to_box(up > THR).to(torch.int64))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_float64_reference(case):
    N, h, w, img, inp, orig = case
    x = make_logits(N, h, w, seed=100 + N)
    masks, stab, boxes = fused(x, case)
    x64 = ops.postprocess_masks_reference(x.double()[:, None], img, inp, orig)[:, 0]
    tol = 1e-4 * float(x64.abs().max())
    near = (x64 - THR).abs() < tol
    assert torch.equal(masks[~near], (x64 > THR)[~near])
    for i in range(N):
        lo_i = int((x64[i] > THR + OFFSET + tol).sum()), int((x64[i] > THR + OFFSET - tol).sum())
        lo_u = int((x64[i] > THR - OFFSET + tol).sum()), int((x64[i] > THR - OFFSET - tol).sum())
        if lo_u[1] == 0:
            assert torch.isnan(stab[i])
            continue
        assert lo_i[0] / lo_u[1] - 1e-6 <= float(stab[i]) <= lo_i[1] / max(lo_u[0], 1) + 1e-6
    if not near.any():
        ref_boxes = ops.mask_to_box_reference(x64 > THR)
        assert torch.equal(boxes, ref_boxes)


def test_edge_masks():
    x = torch.full((3, 8, 8), -6.0)
    x[1] = 6.0
    x[2, 3, 5] = 40.0  # a single hot low-res pixel -> a small blob
    masks, stab, boxes = ops.postprocess_masks_stats(x, 32, (32, 32), (29, 31), THR, OFFSET)
    assert not masks[0].any() and torch.isnan(stab[0]) and boxes[0].tolist() == [0, 0, 0, 0]
    assert masks[1].all() and stab[1] == 1.0 and boxes[1].tolist() == [0, 0, 30, 28]
    ys, xs = torch.nonzero(masks[2], as_tuple=True)
    assert len(ys) > 0 and boxes[2].tolist() == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    assert 0.0 < float(stab[2]) < 1.0


def test_reference_backend_and_dtypes_agree():
    case = CASES[1]
    x = make_logits(*case[:3], seed=7)
    got = fused(x, case)
    with ops.backend("reference"):
        ref = fused(x, case)
    assert (got[0] == ref[0]).float().mean() > 0.9999
    torch.testing.assert_close(got[1], ref[1], atol=1e-3, rtol=0, equal_nan=True)
    # bf16 logits are upcast to float32 for the kernel
    mb, sb, bb = fused(x.bfloat16(), case)
    m32, s32, b32 = fused(x.bfloat16().float(), case)
    assert torch.equal(mb, m32) and torch.equal(bb, b32)
    torch.testing.assert_close(sb, s32, rtol=0, atol=0, equal_nan=True)
    empty = ops.postprocess_masks_stats(x[:0], *case[3:], THR, OFFSET)
    assert [tuple(t.shape) for t in empty] == [(0, *case[5]), (0,), (0, 4)]


def test_bad_arguments_via_ops():
    x = make_logits(2, 8, 8, seed=0)
    with pytest.raises(ValueError, match=r"masks: expected low-res logits \[N, h, w\]"):
        ops.postprocess_masks_stats(x[None], 32, (32, 32), (10, 10), THR, OFFSET)
    with pytest.raises(TypeError, match="masks"):
        ops.postprocess_masks_stats(x.to(torch.int32), 32, (32, 32), (10, 10), THR, OFFSET)
    with pytest.raises(ValueError, match="input_size"):
        ops.postprocess_masks_stats(x, 32, (33, 32), (10, 10), THR, OFFSET)
    with pytest.raises(ValueError, match="original_size"):
        ops.postprocess_masks_stats(x, 32, (32, 32), (0, 10), THR, OFFSET)


def test_bad_arguments_via_C():
    x = make_logits(2, 8, 8, seed=0)
    r = ops.tensor_ref  # TensorRefs borrow memory: keep every tensor alive across the call
    out, stab, boxes = torch.empty(2, 10, 12, dtype=torch.bool), torch.empty(2), torch.empty(2, 4, dtype=torch.int64)
    out_f, stab_3, boxes_32, x_t = torch.empty(2, 10, 12), torch.empty(3), boxes.int(), x.transpose(1, 2)
    _C.postprocess_masks_stats_cpu(r(x), r(out), r(stab), r(boxes), 32, 30, 32, 0.0, 1.0, -1.0)  # valid
    with pytest.raises(TypeError, match="out: expected dtype bool"):
        _C.postprocess_masks_stats_cpu(r(x), r(out_f), r(stab), r(boxes), 32, 30, 32, 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"stability: expected shape \[2\]"):
        _C.postprocess_masks_stats_cpu(r(x), r(out), r(stab_3), r(boxes), 32, 30, 32, 0.0, 1.0, -1.0)
    with pytest.raises(TypeError, match="boxes: expected dtype int64"):
        _C.postprocess_masks_stats_cpu(r(x), r(out), r(stab), r(boxes_32), 32, 30, 32, 0.0, 1.0, -1.0)
    with pytest.raises(TypeError, match="masks"):
        _C.postprocess_masks_stats_cpu(r(x.double()), r(out), r(stab), r(boxes), 32, 30, 32, 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="contiguous"):
        _C.postprocess_masks_stats_cpu(r(x_t), r(out), r(stab), r(boxes), 32, 30, 32, 0.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="input size"):
        _C.postprocess_masks_stats_cpu(r(x), r(out), r(stab), r(boxes), 32, 33, 32, 0.0, 1.0, -1.0)


def test_opcheck():
    x = make_logits(3, 6, 9, seed=4)[1:]  # no empty mask: opcheck compares outputs without equal_nan
    torch.library.opcheck(ops._postprocess_stats_op, (x, 36, 30, 36, 41, 23, 0.0, 1.0, -1.0))


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=str)
def test_cuda_matches_cpu(case):
    if not hasattr(_C, "postprocess_masks_stats_cuda"):
        pytest.skip("samfast._C was built without CUDA")
    N, h, w, img, inp, orig = case
    x = make_logits(N, h, w, seed=N)
    cm, cs, cb = (t.cpu() for t in fused(x.cuda(), case))
    m, s, b = fused(x, case)
    # CUDA composes the tap weights in float32 (as PyTorch does), the CPU in float64: pixels within
    # ~1e-4 of a threshold may land on the other side, which moves small masks' statistics noticeably
    assert (cm != m).float().mean() < 1e-3
    big = m.flatten(1).sum(1) > 1000
    torch.testing.assert_close(cs[big], s[big], atol=1e-2, rtol=0, equal_nan=True)
    assert torch.equal(torch.isnan(cs), torch.isnan(s))
    assert (cb[big] - b[big]).abs().max() <= 2
    # and exactly against the unfused CUDA pipeline on the same device floats
    up = ops.postprocess_masks(x.cuda()[:, None], img, inp, orig)[:, 0]
    assert torch.equal(cm, (up > THR).cpu())
    torch.testing.assert_close(cs, ops.stability_score(up, THR, OFFSET).cpu(), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(cb, ops.mask_to_box(up > THR).cpu())
