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
    out = ops._mask_embed_op(mask.float(), *[p.float() for p in params], eps1, eps2)  # the kernel itself
    assert out.shape == (B, C, H // 4, W // 4) and out.dtype == torch.float32
    # the same-dtype reference's own error sets the scale (flash-attention's test style)
    ref32 = ops.mask_embed_reference(mask.float(), [p.float() for p in params], eps1, eps2)
    bound = max(4 * rel_err(ref32, ref), 1e-6)
    assert rel_err(out, ref) < bound, (rel_err(out, ref), rel_err(ref32, ref))


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls of the C++ kernel behind ops.mask_embed."""
    import samfast.ops_prompt as op_mod

    calls = []
    real = op_mod._C

    class Counting:
        def __getattr__(self, name):
            fn = getattr(real, name)
            if name != "mask_embed_cpu":
                return fn
            return lambda *a: (calls.append(1), fn(*a))[1]

    monkeypatch.setattr(op_mod, "_C", Counting())
    return calls


def test_prompt_encoder_uses_kernel_and_matches_module(kernel_calls):
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
    assert len(kernel_calls) == 1, "the kernels backend did not run _C.mask_embed_cpu"
    assert torch.equal(ref, want)  # the reference backend runs the modules themselves
    assert rel_err(got, want.double()) < 1e-5
    # with gradients on, the modules run (the kernel has no backward)
    with ops.backend("kernels"):
        out = pe(points=None, boxes=None, masks=masks)[1]
        direct = ops.mask_embed(masks, list(ops.mask_downscaling_params(pe.mask_downscaling)[0]))
    assert out.requires_grad and torch.equal(out.detach(), want)
    assert direct.requires_grad  # ops.mask_embed itself falls back when a gradient is needed
    direct.sum().backward()
    assert len(kernel_calls) == 1


def test_mask_sizes_the_convolutions_crop_use_the_modules(kernel_calls):
    """Conv2d with stride 2 drops an odd last row / column; the kernel needs multiples of 4, so such masks
    keep the modules instead of raising."""
    pe = PromptEncoder(embed_dim=32, image_embedding_size=(4, 4), input_image_size=(16, 16), mask_in_chans=16)
    masks = torch.randn(1, 1, 18, 17)
    with torch.no_grad(), ops.backend("kernels"):
        out = pe._embed_masks(masks)
        want = pe.mask_downscaling(masks)
    assert out.shape == (1, 32, 4, 4) and torch.equal(out, want) and not kernel_calls


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


def test_empty_batch_and_hooks(kernel_calls):
    params = [p.float() for p in make_params(4, 16, 8)]
    assert ops.mask_embed(torch.randn(0, 1, 16, 16), params).shape == (0, 8, 4, 4)
    pe = PromptEncoder(embed_dim=32, image_embedding_size=(4, 4), input_image_size=(16, 16), mask_in_chans=16)
    seen = []
    pe.mask_downscaling[1].register_forward_hook(lambda *a: seen.append(1))
    assert ops.mask_downscaling_params(pe.mask_downscaling) is None  # a hook would not run inside the kernel
    with torch.no_grad(), ops.backend("kernels"):
        pe._embed_masks(torch.randn(1, 1, 16, 16))
    assert seen and not kernel_calls


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
    import samfast.ops_prompt as op_mod

    calls = []
    orig = op_mod._mask_embed_op
    monkeypatch.setattr(op_mod, "_mask_embed_op", lambda *a: (calls.append(1), orig(*a))[1])
    fused = ps.predict(**kw)
    assert calls, "the mask prompt did not run the mask_embed kernel"
    with ops.backend("reference"):
        ref = ps.predict(**kw)
    assert rel_err(torch.as_tensor(fused[2]), torch.as_tensor(ref[2]).double()) < 1e-4
