"""Fused mask-prompt embedding (_C.mask_embed_cpu, the prompt encoder's mask_downscaling) vs the float64
PyTorch reference and vs the official module."""
import pytest
import torch
from torch import nn

import samfast
import samfast.ops as ops
from samfast import _C
from samfast.modeling.prompt_encoder import PromptEncoder

pytestmark = pytest.mark.skipif(not hasattr(_C, "mask_embed_cpu"), reason="mask_embed_cpu not built")

# (B, H, W, C1, C2, C): H, W = 4 * output grid
SHAPES = [
    (1, 256, 256, 4, 16, 256),  # SAM: 64x64 grid, mask_in_chans 16, embed dim 256
    (3, 20, 44, 4, 16, 24),     # w = 11: AVX2 blocks of 8 + per-pixel tail, padded GEMM row
    (2, 4, 4, 3, 5, 7),         # one pixel, odd channel counts
    (1, 8, 72, 16, 64, 40),     # the widest C1 / C2 the vector path takes
    (1, 8, 8, 17, 65, 9),       # wider: portable path only
]


def make_params(C1, C2, C, seed=0, dtype=torch.float64):
    """Every weight non-trivial (LayerNorm affine included)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    return [r(C1, 1, 2, 2, scale=0.7), r(C1, scale=0.5), r(C1, scale=0.3, shift=1.0), r(C1, scale=0.3),
            r(C2, C1, 2, 2, scale=(4 * C1) ** -0.5), r(C2, scale=0.5), r(C2, scale=0.3, shift=1.0), r(C2, scale=0.3),
            r(C, C2, 1, 1, scale=C2 ** -0.5), r(C, scale=0.5)]


def rel_err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fp32_matches_float64_reference(shape, simd):
    B, H, W, C1, C2, C = shape
    g = torch.Generator().manual_seed(1)
    mask = torch.randn(B, 1, H, W, generator=g, dtype=torch.float64) * 4  # logits-like scale
    params = make_params(C1, C2, C)
    eps1, eps2 = 1e-6, 1e-5
    ref = ops.mask_embed_reference(mask, params, eps1, eps2)
    out = ops.mask_embed(mask.float(), [p.float() for p in params], eps1, eps2)
    assert out.shape == (B, C, H // 4, W // 4) and out.dtype == torch.float32
    # the same-dtype reference's own error sets the scale (flash-attention's test style)
    ref32 = ops.mask_embed_reference(mask.float(), [p.float() for p in params], eps1, eps2)
    bound = max(4 * rel_err(ref32, ref), 1e-6)
    assert rel_err(out, ref) < bound, (rel_err(out, ref), rel_err(ref32, ref))


def test_prompt_encoder_uses_kernel_and_matches_module():
    pe = PromptEncoder(embed_dim=32, image_embedding_size=(6, 10), input_image_size=(24, 40), mask_in_chans=16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pe.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.dim() == 1 and p.numel() in (4, 16) else 0))
    masks = torch.randn(2, 1, 24, 40, generator=g) * 3
    with torch.no_grad():
        want = pe.mask_downscaling(masks)
        with ops.backend("kernels"):
            got = pe(points=None, boxes=None, masks=masks)[1]
        with ops.backend("reference"):
            ref = pe(points=None, boxes=None, masks=masks)[1]
    assert torch.equal(ref, want)  # the reference backend runs the modules themselves
    assert rel_err(got, want.double()) < 1e-5
    # with gradients on, the modules run (the kernel has no backward)
    with ops.backend("kernels"):
        out = pe(points=None, boxes=None, masks=masks)[1]
    assert out.requires_grad and torch.equal(out.detach(), want)


def test_unsupported_structure_falls_back():
    pe = PromptEncoder(embed_dim=32, image_embedding_size=(4, 4), input_image_size=(16, 16), mask_in_chans=8)
    assert ops.mask_downscaling_params(pe.mask_downscaling) is not None
    pe.mask_downscaling[2] = nn.GELU(approximate="tanh")
    assert ops.mask_downscaling_params(pe.mask_downscaling) is None
    masks = torch.randn(1, 1, 16, 16)
    with torch.no_grad(), ops.backend("kernels"):
        assert torch.equal(pe._embed_masks(masks), pe.mask_downscaling(masks))


def test_non_contiguous_mask():
    params = [p.float() for p in make_params(4, 16, 8)]
    base = torch.randn(1, 1, 24, 16)
    mask = base.transpose(2, 3)  # [1, 1, 16, 24], not contiguous
    assert not mask.is_contiguous()
    out = ops.mask_embed(mask, params)
    ref = ops.mask_embed_reference(mask.double(), [p.double() for p in params])
    assert rel_err(out, ref) < 1e-5


def test_bad_inputs_raise():
    params = [p.float() for p in make_params(4, 16, 8)]
    with pytest.raises(ValueError, match="mask: expected"):
        ops.mask_embed(torch.randn(1, 16, 16), params)
    with pytest.raises(ValueError, match="multiples of 4"):
        ops.mask_embed(torch.randn(1, 1, 18, 16), params)
    with pytest.raises(ValueError, match="params: expected 10"):
        ops.mask_embed(torch.randn(1, 1, 16, 16), params[:9])
    bad = list(params)
    bad[4] = torch.randn(16, 3, 2, 2)  # w2 does not take C1 = 4 channels
    with pytest.raises(ValueError, match="w2: expected shape"):
        ops.mask_embed(torch.randn(1, 1, 16, 16), bad)
    # the binding checks dtypes and shapes itself
    mask = torch.randn(1, 1, 16, 16)
    out = torch.empty(1, 8, 4, 4)
    refs = [ops.tensor_ref(t) for t in (mask, *params)]
    with pytest.raises(TypeError, match="mask: expected dtype float32"):
        _C.mask_embed_cpu(ops.tensor_ref(mask.double()), *refs[1:], ops.tensor_ref(out), 1e-6, 1e-6)
    with pytest.raises(ValueError, match="out: expected shape"):
        _C.mask_embed_cpu(*refs, ops.tensor_ref(torch.empty(1, 8, 4, 5)), 1e-6, 1e-6)


def test_opcheck():
    params = [p.float() for p in make_params(4, 16, 8)]
    torch.library.opcheck(ops._mask_embed_op, (torch.randn(2, 1, 12, 20), *params, 1e-6, 1e-6))


def test_predictor_mask_prompt_uses_kernel(tmp_path, monkeypatch):
    """A mask prompt through SamPredictor runs the fused embedding, and matches the reference backend."""
    from sam_testing import TINY, make_checkpoint, random_image

    _, path = make_checkpoint(tmp_path, TINY, seed=3)
    ps = samfast.SamPredictor(samfast.load("auto", path))
    ps.set_image(random_image(90, 130, seed=4))
    prev = torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(5)).numpy() * 3
    kw = dict(point_coords=[[40, 30]], point_labels=[1], mask_input=prev, multimask_output=False, return_logits=True)
    calls = []
    orig = ops.mask_embed
    monkeypatch.setattr(ops, "mask_embed", lambda *a, **k: (calls.append(1), orig(*a, **k))[1])
    fused = ps.predict(**kw)
    assert calls, "the mask prompt did not run ops.mask_embed"
    with ops.backend("reference"):
        ref = ps.predict(**kw)
    assert rel_err(torch.as_tensor(fused[2]), torch.as_tensor(ref[2]).double()) < 1e-4
