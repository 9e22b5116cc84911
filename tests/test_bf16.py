"""bf16 models (samfast.load(..., dtype=torch.bfloat16)): masks agree with the fp32 model's on > 99 % of
pixels (issue #3's bar for the bf16 path), with every parameter randomised, for point and box prompts."""
import warnings

import numpy as np
import pytest
import torch

import samfast
from sam_testing import SMALL, TINY, make_checkpoint, random_image


@pytest.mark.parametrize("decoder_dtype", [None, torch.bfloat16], ids=["decoder-default", "decoder-bf16"])
@pytest.mark.parametrize("cfg", [TINY, SMALL], ids=lambda c: c.name)
def test_bf16_masks_agree_with_fp32(cfg, decoder_dtype, tmp_path):
    _, path = make_checkpoint(tmp_path, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bf16 warns that it is slow
        m32 = samfast.load("auto", path)
        m16 = samfast.load("auto", path, dtype=torch.bfloat16, decoder_dtype=decoder_dtype)
    assert m16.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    # on the CPU the decoder stays float32 by default (its C++ kernel is float32)
    assert m16.dtype == (decoder_dtype or torch.float32)
    img = random_image(200, 300, seed=3)
    p32, p16 = samfast.SamPredictor(m32), samfast.SamPredictor(m16)
    p32.set_image(img)
    p16.set_image(img)
    rng = np.random.default_rng(0)
    for i in range(6):
        pt = rng.uniform([0, 0], [300, 200], size=(1, 2))
        box = np.concatenate([pt[0] - 40, pt[0] + 40]) if i % 2 else None
        a, s32, _ = p32.predict(pt, np.array([1]), box=box)
        b, s16, _ = p16.predict(pt, np.array([1]), box=box)
        assert a.shape == b.shape and a.dtype == b.dtype == bool
        assert 0.0 < a.mean() < 1.0  # a real mask, not all-on / all-off
        assert (a == b).mean() > 0.99, f"prompt {i}: bf16 masks agree on only {(a == b).mean():.4f} of pixels"
        assert np.abs(s32 - s16).max() < 0.05


def test_mixed_dtypes_sam_forward(tmp_path):
    """Sam.forward (batched dict API) with a bf16 encoder and a float32 decoder."""
    _, path = make_checkpoint(tmp_path, TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = samfast.load("auto", path, dtype=torch.bfloat16)
    p = samfast.SamPredictor(m)
    img = random_image(120, 90, seed=1)
    t = torch.as_tensor(p.transform.apply_image(img)).permute(2, 0, 1).contiguous()
    pts = p.transform.apply_coords_torch(torch.tensor([[[40.0, 50.0]]]), img.shape[:2])
    out = m([dict(image=t, original_size=img.shape[:2], point_coords=pts, point_labels=torch.tensor([[1]]))],
            multimask_output=True)[0]
    assert out["masks"].shape == (1, 3, 120, 90) and out["low_res_logits"].dtype == torch.float32
    with pytest.raises(TypeError, match="decoder_dtype"):
        samfast.load("auto", path, decoder_dtype=torch.int8)
