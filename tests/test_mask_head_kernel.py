"""Fused mask head kernel (_C.mask_head_cpu) vs the float64 PyTorch reference."""
import pytest
import torch

import samfast.ops as ops
from samfast import _C

pytestmark = pytest.mark.skipif(not hasattr(_C, "mask_head_cpu"), reason="mask_head_cpu not built")

# (B, h, w, C, C1, C2, M)
SMALL_SHAPES = [
    (1, 5, 7, 24, 8, 4, 1),
    (3, 5, 7, 24, 8, 4, 3),
    (1, 5, 7, 24, 8, 8, 4),
    (2, 3, 9, 16, 16, 16, 3),   # C2 % 8 == 0: vectorised hypernetwork dot
    (1, 4, 4, 20, 5, 3, 2),     # 4*C1 not a multiple of 16: padded GEMM panels
    (2, 1, 13, 32, 24, 40, 1),  # tile boundaries, wide C2
]
SAM_SHAPE = (1, 64, 64, 256, 64, 32, 3)


def make_args(B, h, w, C, C1, C2, M, seed=0):
    """float64 random inputs, every weight (incl. biases / LayerNorm affine) non-trivial."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    return [r(B, h, w, C), r(C, C1, 2, 2, scale=C ** -0.5), r(C1, scale=0.5), r(C1, scale=0.3, shift=1.0),
            r(C1, scale=0.3), r(C1, C2, 2, 2, scale=C1 ** -0.5), r(C2, scale=0.5), r(B, M, C2, scale=0.5)]


def rel_err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("shape", SMALL_SHAPES + [SAM_SHAPE], ids=str)
def test_fp32_matches_reference(shape, simd):
    args = make_args(*shape)
    ref = ops.mask_head_reference(*args)
    out = ops._mask_head_op(*[t.float() for t in args])
    B, h, w, _, _, _, M = shape
    assert out.shape == (B, M, 4 * h, 4 * w) and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("shape", SMALL_SHAPES[1:3] + [(1, 16, 16, 256, 64, 32, 3)], ids=str)
def test_bf16_within_reference_error(shape, simd):
    args = [t.bfloat16() for t in make_args(*shape, seed=1)]
    ref = ops.mask_head_reference(*[t.double() for t in args])  # exact math on the bf16 inputs
    out = ops._mask_head_op(*args)
    assert out.dtype == torch.bfloat16
    err = rel_err(out, ref)
    err_torch_bf16 = rel_err(ops.mask_head_reference(*args), ref)
    assert err <= max(2 * err_torch_bf16, 2 ** -8), (err, err_torch_bf16)


def test_public_op_dispatches_to_kernel():
    args = [t.float() for t in make_args(2, 5, 7, 24, 8, 4, 3, seed=2)]
    with ops.backend("reference"):
        ref = ops.mask_head(*args)
    out = ops.mask_head(*args)
    assert rel_err(out, ref) < 1e-5
    # non-contiguous inputs are made contiguous by the wrapper
    src_nc = args[0].permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    assert not src_nc.is_contiguous()
    assert rel_err(ops.mask_head(src_nc, *args[1:]), ref) < 1e-5
    # dtypes without a kernel (float64, float16) fall back to the reference
    args64 = [t.double() for t in args]
    assert rel_err(ops.mask_head(*args64), ops.mask_head_reference(*args64)) == 0.0


def test_wrong_args_via_ops():
    a = [t.float() for t in make_args(1, 5, 7, 24, 8, 4, 2)]
    with pytest.raises(ValueError, match="w1"):
        ops.mask_head(a[0], a[1][:, :, :1], *a[2:])
    with pytest.raises(ValueError, match="hyper_in"):
        ops.mask_head(*a[:7], a[7][..., :3])
    with pytest.raises(TypeError, match="b2"):
        ops.mask_head(*a[:6], a[6].double(), a[7])


def test_wrong_args_via_C():
    a = [t.float() for t in make_args(1, 5, 7, 24, 8, 4, 2)]
    # TensorRefs borrow memory: keep every tensor alive across the call
    out, out_bad, out_t = torch.empty(1, 2, 20, 28), torch.empty(1, 2, 20, 27), torch.empty(1, 2, 28, 20)
    a64, out64, hyper_bf16, src_t = [t.double() for t in a], out.double(), a[7].bfloat16(), a[0].transpose(1, 2)
    ln_w_bad, w2_bad = a[3][:5], a[5][:4]
    refs = lambda ts: [ops.tensor_ref(t) for t in ts]  # noqa: E731
    _C.mask_head_cpu(*refs(a + [out]))  # valid call works
    with pytest.raises(ValueError, match=r"out: expected shape \[1, 2, 20, 28\]"):
        _C.mask_head_cpu(*refs(a + [out_bad]))
    with pytest.raises(ValueError, match="ln_w"):
        _C.mask_head_cpu(*refs(a[:3] + [ln_w_bad] + a[4:] + [out]))
    with pytest.raises(ValueError, match="w2"):
        _C.mask_head_cpu(*refs(a[:5] + [w2_bad] + a[6:] + [out]))
    with pytest.raises(TypeError, match="src"):
        _C.mask_head_cpu(*refs(a64 + [out64]))
    with pytest.raises(TypeError, match="hyper_in"):
        _C.mask_head_cpu(*refs(a[:7] + [hyper_bf16] + [out]))
    with pytest.raises(ValueError, match="contiguous"):
        _C.mask_head_cpu(*refs([src_t] + a[1:] + [out_t]))


def test_opcheck():
    args = [t.float() for t in make_args(2, 3, 5, 16, 8, 8, 3, seed=3)]
    torch.library.opcheck(ops._mask_head_op, args)
