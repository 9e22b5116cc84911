"""Test helpers: official models with every parameter randomised, saved as checkpoints."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch

import samfast

official = __import__("pytest").importorskip("segment_anything", reason="the official segment-anything package is the oracle")
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer)

# Small configurations keep the suite fast on 2 cores: 256-pixel inputs give a 16x16 grid, whose
# 14-wide windows need padding (to 28), so padded-token semantics are always exercised.
TINY = samfast.SamConfig(embed_dim=64, depth=3, num_heads=4, global_attn_indexes=(1,), image_size=256, name="tiny")
SMALL = samfast.SamConfig(embed_dim=96, depth=4, num_heads=3, global_attn_indexes=(1, 3), image_size=320,
                          name="small")


def build_official(cfg: samfast.SamConfig) -> Sam:
    grid = cfg.image_size // cfg.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.depth, embed_dim=cfg.embed_dim, img_size=cfg.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg.num_heads, patch_size=cfg.patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=list(cfg.global_attn_indexes),
            window_size=cfg.window_size, out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and persistent buffer gets random, non-zero values of a sane scale
    (the official init leaves rel-pos tables, pos_embed and many biases at zero)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith(("pixel_mean", "pixel_std")):
            continue
        r = torch.randn(p.shape, generator=g)
        if p.dim() == 1:  # LayerNorm / LayerNorm2d weights, and biases
            val = 1.0 + 0.2 * r if name.endswith("weight") else 0.2 * r
        elif "rel_pos" in name:
            val = 0.5 * r
        elif any(k in name for k in ("pos_embed", "gaussian_matrix", "point_embed", "mask_embed")) or \
                name.endswith(("iou_token.weight", "mask_tokens.weight")):
            val = r
        else:  # linear / conv weights: unit-variance outputs
            fan_in = p.shape[0] if "output_upscaling" in name else p[0].numel()
            val = r / math.sqrt(max(fan_in, 1))
        p.copy_(val.to(p.dtype))
    return model


def make_checkpoint(tmp_path, cfg: samfast.SamConfig, seed: int = 0):
    """-> (official model, path of its .pth)."""
    model = randomise(build_official(cfg), seed)
    path = tmp_path / f"sam_{cfg.name}_{seed}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random HxWx3 uint8 image (blobs + noise), so masks have structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.4) * max(h, w)
        img += rng.uniform(-120, 120, size=3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    img += 128 + rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def rel_err(a, b) -> float:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def count_fast(p, monkeypatch):
    """Patches predictor `p`'s decoder so that each `predict` call records whether the one-call C++ path
    (`_C.PromptPredictor`) answered (True) or fell back to the general path (False); returns that list."""
    runs, fd = [], p._fast_decoder
    orig = fd.prompt_predictor

    class Counted:
        def __init__(self, pp):
            self.pp = pp

        def predict(self, *a):
            r = self.pp.predict(*a)
            runs.append(r is not None)
            return r

    monkeypatch.setattr(fd, "prompt_predictor", lambda *a, **k: (lambda pp: pp and Counted(pp))(orig(*a, **k)))
    return runs
