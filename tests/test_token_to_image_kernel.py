"""Fused token->image attention kernel (_C.token_to_image_attention_cpu) vs the float64 PyTorch reference:
odd sizes (C not a multiple of 8, N not a multiple of the 64-key tile, a single key), broadcast image
tokens, keys with and without k_add, large scores (online softmax), every SIMD path, bad input."""
import pytest
import torch

import samfast.ops as ops
from samfast import _C

pytestmark = pytest.mark.skipif(not hasattr(_C, "token_to_image_attention_cpu"), reason="kernel not built")

# (B, Bx, Q, N, C, with k_add)
CASES = [
    (1, 1, 56, 4096, 256, True),   # SAM vit_b decoder, one prompt: 8 heads x 7 tokens
    (3, 3, 56, 4096, 256, True),   # batched prompts, per-prompt image tokens
    (4, 1, 13, 100, 37, False),    # shared image tokens, odd sizes
    (2, 2, 7, 65, 24, True),       # one key past a tile
    (1, 1, 1, 1, 8, True),         # a single key
    (5, 5, 25, 63, 9, False),
]


def make(case, seed, scale=0.3):
    B, Bx, Q, N, C, ka = case
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, Q, C, generator=g, dtype=torch.float64) * scale
    x = torch.randn(Bx, N, C, generator=g, dtype=torch.float64)
    k = torch.randn(N, C, generator=g, dtype=torch.float64) if ka else None
    return u, x, k


def rel_err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fp32_matches_float64_reference(case, simd):
    u, x, k = make(case, seed=len(str(case)))
    ref = ops.token_to_image_attention_reference(u, x, k)
    out = ops._token_to_image_op(u.float(), x.float(), k.float() if k is not None else None)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-5


def test_large_scores_stay_finite(simd):
    """Scores of +-100s: the online softmax rescales as the running max grows."""
    case = (2, 2, 9, 300, 16, True)
    u, x, k = make(case, seed=3, scale=8.0)
    ref = ops.token_to_image_attention_reference(u, x, k)
    out = ops.token_to_image_attention(u.float(), x.float(), k.float())
    assert torch.isfinite(out).all() and rel_err(out, ref) < 1e-5


def test_public_op_dispatch_and_fallback():
    u, x, k = make((2, 1, 5, 70, 12, True), seed=5)
    out = ops.token_to_image_attention(u.float(), x.float(), k.float())
    with ops.backend("reference"):
        ref = ops.token_to_image_attention(u.float(), x.float(), k.float())
    assert rel_err(out, ref.double()) < 1e-5
    # float64 has no kernel: the reference runs
    assert torch.equal(ops.token_to_image_attention(u, x, k), ops.token_to_image_attention_reference(u, x, k))


def test_bad_arguments_via_ops():
    u, x, k = (t.float() for t in make((2, 2, 5, 10, 8, True), seed=0))
    with pytest.raises(ValueError, match=r"u: expected \[B, Q, C\]"):
        ops.token_to_image_attention(u[0], x, k)
    with pytest.raises(ValueError, match=r"x: expected \[1 or 2, N > 0, 8\]"):
        ops.token_to_image_attention(u, x[:, :, :4], k)
    with pytest.raises(ValueError, match=r"x: expected"):
        ops.token_to_image_attention(u, x[:, :0], None)
    with pytest.raises(ValueError, match=r"k_add: expected \[10, 8\]"):
        ops.token_to_image_attention(u, x, k[:3])
    with pytest.raises(TypeError, match="x: dtype"):
        ops.token_to_image_attention(u, x.double(), k)


def test_bad_arguments_via_C():
    u, x, k = (t.float() for t in make((2, 2, 5, 10, 8, True), seed=0))
    r = ops.tensor_ref  # TensorRefs borrow memory: keep every tensor alive across the call
    out, none = torch.empty(2, 5, 8), torch.empty(0)
    x3, x_t, out_bad, k_bad = torch.empty(3, 10, 8), x.transpose(1, 2).contiguous().transpose(1, 2), \
        torch.empty(2, 5, 9), torch.empty(9, 8)
    _C.token_to_image_attention_cpu(r(u), r(x), r(k), r(out))  # valid
    _C.token_to_image_attention_cpu(r(u), r(x), r(none), r(out))  # k_add absent
    with pytest.raises(ValueError, match=r"x: expected \[1 or 2"):
        _C.token_to_image_attention_cpu(r(u), r(x3), r(k), r(out))
    with pytest.raises(ValueError, match="contiguous"):
        _C.token_to_image_attention_cpu(r(u), r(x_t), r(k), r(out))
    with pytest.raises(ValueError, match=r"out: expected shape \[2, 5, 8\]"):
        _C.token_to_image_attention_cpu(r(u), r(x), r(k), r(out_bad))
    with pytest.raises(ValueError, match=r"k_add: expected shape \[10, 8\]"):
        _C.token_to_image_attention_cpu(r(u), r(x), r(k_bad), r(out))
    with pytest.raises(TypeError, match="u: expected dtype float32"):
        _C.token_to_image_attention_cpu(r(u.double()), r(x), r(k), r(out))


def test_opcheck():
    u, x, k = (t.float() for t in make((2, 1, 5, 70, 12, True), seed=9))
    torch.library.opcheck(ops._token_to_image_op, (u, x, k))
    torch.library.opcheck(ops._token_to_image_op, (u, x, None))


def test_nan_propagates_like_torch(simd):
    """A NaN query gives a NaN output row, as torch's softmax does (never a silent finite value)."""
    u, x, k = (t.float() for t in make((1, 1, 4, 130, 16, True), seed=2))
    u[0, 2, 5] = float("nan")
    out = ops._token_to_image_op(u, x, k)
    ref = ops.token_to_image_attention_reference(u, x, k)
    assert torch.isnan(ref[0, 2]).all() and torch.isnan(out[0, 2]).all()
    assert torch.isfinite(out[0, [0, 1, 3]]).all()
