"""Fused mask postprocessing kernel (_C.postprocess_masks_cpu) vs the float64 PyTorch reference."""
import functools

import pytest
import torch

import samfast.ops as ops
from samfast import _C

pytestmark = pytest.mark.skipif(not hasattr(_C, "postprocess_masks_cpu"), reason="postprocess_masks_cpu not built")

# (B, M, h, w, img_size, input_size, original_size)
CASES = [
    (1, 3, 256, 256, 1024, (768, 1024), (768, 1024)),  # SAM: 256 -> 1024 -> crop -> 768x1024
    (2, 1, 5, 7, 40, (33, 17), (1023, 517)),            # odd sizes, strong upsizing
    (1, 4, 9, 6, 16, (16, 9), (37, 999)),
    (1, 2, 64, 48, 32, (30, 20), (7, 5)),               # downsizing in both stages
    (1, 1, 32, 40, 128, (128, 85), (300, 200)),
    (3, 1, 17, 23, 64, (41, 64), (41, 64)),             # identity second stage
]


def make_masks(B, M, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, M, h, w, generator=g, dtype=torch.float64) * 4 + 0.5


@functools.lru_cache(maxsize=None)
def masks_and_reference(case, seed):
    """float64 masks + float64 reference, computed once per (case, seed) and shared by tests."""
    B, M, h, w, img, inp, orig = case
    m = make_masks(B, M, h, w, seed)
    return m, ops.postprocess_masks_reference(m, img, inp, orig)


def run_op(masks, img, inp, orig, threshold=None):
    return ops._postprocess_masks_op(masks, img, inp[0], inp[1], orig[0], orig[1],
                                     0.0 if threshold is None else threshold, threshold is not None)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fp32_logits(case, simd):
    B, M, h, w, img, inp, orig = case
    m, ref = masks_and_reference(case, 0)
    out = run_op(m.float(), img, inp, orig)
    assert out.shape == (B, M, *orig) and out.dtype == torch.float32
    assert float((out.double() - ref).abs().max() / ref.abs().max()) < 1e-5


@pytest.mark.parametrize("case,threshold", [(c, 0.0) for c in CASES] + [(CASES[1], 1.3), (CASES[3], -0.7)], ids=str)
def test_binary_masks(case, threshold, simd):
    B, M, h, w, img, inp, orig = case
    m, ref = masks_and_reference(case, 0)
    out = run_op(m.float(), img, inp, orig, threshold)
    assert out.dtype == torch.bool and out.shape == (B, M, *orig)
    agree = (out == (ref > threshold)).double().mean().item()
    assert agree > 0.9999
    clear = (ref - threshold).abs() > 1e-4 * ref.abs().max()  # away from the threshold: exact
    assert torch.equal(out[clear], (ref > threshold)[clear])


@pytest.mark.parametrize("case,threshold", [(CASES[0], 0.0), (CASES[1], 1.3), (CASES[4], -0.7)], ids=str)
def test_binary_masks_are_the_logits_thresholded(case, threshold, simd):
    """The fused threshold (a separate code path per SIMD level) gives exactly float output > threshold."""
    m, _ = masks_and_reference(case, 0)
    logits = run_op(m.float(), *case[4:])
    assert torch.equal(run_op(m.float(), *case[4:], threshold), logits > threshold)


@pytest.mark.parametrize("case", CASES[1:4], ids=str)
def test_bf16(case, simd):
    B, M, h, w, img, inp, orig = case
    m = make_masks(B, M, h, w, seed=2).bfloat16()
    ref = ops.postprocess_masks_reference(m.double(), img, inp, orig)
    out = run_op(m, img, inp, orig)
    assert out.dtype == torch.bfloat16
    err = float((out.double() - ref).abs().max() / ref.abs().max())
    err_torch = float((ops.postprocess_masks_reference(m, img, inp, orig).double() - ref).abs().max()
                      / ref.abs().max())
    assert err <= max(2 * err_torch, 2 ** -8), (err, err_torch)
    outb = run_op(m, img, inp, orig, 0.25)
    assert (outb == (ref > 0.25)).double().mean().item() > 0.999


def test_public_op_dispatches_to_kernel():
    m = make_masks(2, 3, 20, 20, seed=3).float()
    with ops.backend("reference"):
        ref = ops.postprocess_masks(m, 80, (60, 80), (123, 164))
        refb = ops.postprocess_masks(m, 80, (60, 80), (123, 164), threshold=0.0)
    out = ops.postprocess_masks(m, 80, (60, 80), (123, 164))
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-5
    outb = ops.postprocess_masks(m, 80, (60, 80), (123, 164), threshold=0.0)
    assert (outb == refb).double().mean().item() > 0.9999
    # dtypes without a kernel (float64, float16) fall back to the reference
    m64 = m.double()
    assert torch.equal(ops.postprocess_masks(m64, 80, (60, 80), (123, 164)),
                       ops.postprocess_masks_reference(m64, 80, (60, 80), (123, 164)))


def test_wrong_args_via_ops():
    m = make_masks(1, 2, 8, 8).float()
    with pytest.raises(ValueError, match="masks"):
        ops.postprocess_masks(m[0], 32, (32, 32), (10, 10))
    with pytest.raises(TypeError, match="masks"):
        ops.postprocess_masks(m.to(torch.int32), 32, (32, 32), (10, 10))
    with pytest.raises(ValueError, match="input_size"):
        ops.postprocess_masks(m, 32, (33, 32), (10, 10))


def test_wrong_args_via_C():
    m = make_masks(2, 2, 8, 8).float()
    r = ops.tensor_ref  # TensorRefs borrow memory: keep every tensor alive across the call
    out, out_b, out_bf16 = torch.empty(2, 2, 10, 12), torch.empty(1, 2, 10, 12), torch.empty(2, 2, 10, 12).bfloat16()
    m64, out64, m_t = m.double(), out.double(), m.transpose(2, 3)
    _C.postprocess_masks_cpu(r(m), r(out), 32, 30, 32, 0.0, False)  # valid
    with pytest.raises(ValueError, match=r"out: expected shape \[2, 2, \*, \*\]"):
        _C.postprocess_masks_cpu(r(m), r(out_b), 32, 30, 32, 0.0, False)
    with pytest.raises(TypeError, match="out: expected dtype bool"):
        _C.postprocess_masks_cpu(r(m), r(out), 32, 30, 32, 0.0, True)
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        _C.postprocess_masks_cpu(r(m), r(out_bf16), 32, 30, 32, 0.0, False)
    with pytest.raises(TypeError, match="masks"):
        _C.postprocess_masks_cpu(r(m64), r(out64), 32, 30, 32, 0.0, False)
    with pytest.raises(ValueError, match="input size"):
        _C.postprocess_masks_cpu(r(m), r(out), 32, 40, 32, 0.0, False)
    with pytest.raises(ValueError, match="contiguous"):
        _C.postprocess_masks_cpu(r(m_t), r(out), 32, 30, 32, 0.0, False)


@pytest.mark.parametrize("binarize", [False, True])
def test_opcheck(binarize):
    m = make_masks(2, 3, 6, 9, seed=4).float()
    torch.library.opcheck(ops._postprocess_masks_op, (m, 36, 30, 36, 41, 23, 0.5, binarize))
