"""Model construction (official configurations) and checkpoint loading that explains itself."""
from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, Mapping, Optional, Sequence, Union

import torch

from .modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer


@dataclass(frozen=True)
class SamConfig:
    """Everything that determines a SAM model's shapes."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Sequence[int]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    name: str = field(default="custom", compare=False)


CONFIGS: Dict[str, SamConfig] = {
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31), name="vit_h"),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23), name="vit_l"),
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11), name="vit_b"),
}
CONFIGS["default"] = CONFIGS["vit_h"]


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the requested model."""


def build_sam_from_config(cfg: SamConfig, checkpoint: Optional[Union[str, os.PathLike, Mapping]] = None) -> Sam:
    """Build a SAM model of configuration `cfg`; load `checkpoint` (path or state_dict) if given."""
    grid = cfg.image_size // cfg.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.depth, embed_dim=cfg.embed_dim, img_size=cfg.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg.num_heads,
            patch_size=cfg.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(cfg.global_attn_indexes), window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=cfg.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=cfg.prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
    )
    sam.eval()
    if checkpoint is not None:
        state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict(checkpoint)
        check_architecture(state, cfg)
        load_into(sam, state)
    return sam


def _registry_builder(key: str):
    def build(checkpoint: Optional[Union[str, os.PathLike]] = None) -> Sam:
        return build_sam_from_config(CONFIGS[key], checkpoint)

    build.__name__ = f"build_sam_{key}"
    build.__doc__ = f"Build SAM {CONFIGS[key].name} (official configuration); optionally load `checkpoint`."
    return build


build_sam_vit_h = _registry_builder("vit_h")
build_sam_vit_l = _registry_builder("vit_l")
build_sam_vit_b = _registry_builder("vit_b")
build_sam = build_sam_vit_h

sam_model_registry = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
}


# ---------------------------------------------------------------------------- checkpoints


def load_state_dict(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file safely: `.pth`/`.pt` via torch.load(weights_only=True) (never runs
    pickled code), `.safetensors` via safetensors. Accepts a raw state_dict or {"model": ...}."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path!r}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError(f"{path!r} is a .safetensors file; `pip install safetensors` to read it") from e
        try:
            return dict(load_file(path))
        except Exception as e:
            raise CheckpointError(f"{path!r} is not a readable safetensors file: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path!r} was refused by the safe loader (torch.load weights_only=True): it holds objects "
            f"other than tensors, possibly code that would run on load. samfast never unpickles code. ({e})"
        ) from e
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source!r} does not hold a state_dict (a mapping of parameter names to tensors)")
    state = dict(obj)
    if any(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state


def infer_config(state: Mapping[str, torch.Tensor]) -> SamConfig:
    """Work out the model configuration from a SAM state_dict's shapes."""
    if "image_encoder.pos_embed" not in state or "image_encoder.blocks.0.attn.rel_pos_h" not in state:
        missing = [k for k in ("image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h") if k not in state]
        raise CheckpointError(f"not a SAM checkpoint: keys {missing} are missing")
    _, grid, _, embed_dim = state["image_encoder.pos_embed"].shape
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1
    head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    patch = state["image_encoder.patch_embed.proj.weight"].shape[-1]
    global_idx, window = [], 14
    for i in range(depth):
        rows = state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]
        if rows == 2 * grid - 1:
            global_idx.append(i)
        else:
            window = (rows + 1) // 2
    cfg = SamConfig(embed_dim, depth, embed_dim // head_dim, tuple(global_idx), grid * patch, patch, window)
    for name, known in CONFIGS.items():
        if name != "default" and known == cfg:
            return SamConfig(**{**cfg.__dict__, "name": name})
    return cfg


def check_architecture(state: Mapping[str, torch.Tensor], cfg: SamConfig) -> None:
    """Raise a CheckpointError that names the mismatch when `state` is not of configuration `cfg`."""
    found = infer_config(state)
    if found != cfg:
        desc = f"{found.name} ({found.depth} blocks, embed dim {found.embed_dim}, image size {found.image_size})"
        want = f"{cfg.name} ({cfg.depth} blocks, embed dim {cfg.embed_dim}, image size {cfg.image_size})"
        raise CheckpointError(f"checkpoint looks like {desc}, but the model being built is {want}; "
                              f"use the matching registry key or samfast.load(checkpoint, arch='auto')")


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """load_state_dict(strict=True) with an error that lists missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def head(items):
            return ", ".join(items[:6]) + (f" ... (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {head(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {head(shapes)}")
        raise CheckpointError("checkpoint does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
