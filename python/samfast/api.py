"""Friendlier entry points: `samfast.load(...)`."""
from __future__ import annotations

import os
import warnings
from typing import Mapping, Optional, Union

import torch

from .build_sam import CONFIGS, SamConfig, build_sam_from_config, infer_config, load_state_dict
from .modeling import Sam


def load(
    arch: str = "auto",
    checkpoint: Optional[Union[str, os.PathLike, Mapping]] = None,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    decoder_dtype: Optional[torch.dtype] = None,
) -> Sam:
    """Build a SAM model, load weights, move it to `device` and set its compute `dtype`.

    arch: "vit_b" | "vit_l" | "vit_h" | "default" | "auto" (read from the checkpoint) or a SamConfig.
    checkpoint: path to .pth/.safetensors, a state_dict, or None (random weights, for benchmarks).
    dtype: float32, bfloat16 or float16 for the image encoder (and, by default, the mask decoder);
      the prompt encoder and all outputs stay float32.
    decoder_dtype: the mask decoder's dtype. Default (None): `dtype` on CUDA, float32 on the CPU, where
      the whole-decoder C++ kernel runs float32 and is faster than reduced-precision torch ops (vit_b,
      2-core AVX-512 CPU, 1 point: 8 ms vs 12 ms) and exact; the image embedding is converted once per image.
    """
    state = None
    if checkpoint is not None:
        state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict(checkpoint)
    if isinstance(arch, SamConfig):
        cfg = arch
    elif arch == "auto":
        if state is None:
            raise ValueError("arch='auto' needs a checkpoint to read the architecture from")
        cfg = infer_config(state)
    elif arch in CONFIGS:
        cfg = CONFIGS[arch]
    else:
        raise ValueError(f"arch must be one of {sorted(CONFIGS)} or 'auto', got {arch!r}")
    for name, dt in (("dtype", dtype), ("decoder_dtype", decoder_dtype)):
        if dt is not None and dt not in (torch.float32, torch.bfloat16, torch.float16):
            raise TypeError(f"{name} must be torch.float32, torch.bfloat16 or torch.float16, got {dt}")
    device = torch.device(device)
    if decoder_dtype is None:
        decoder_dtype = dtype if device.type == "cuda" else torch.float32
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r} requested but no CUDA GPU is visible to torch")
    if device.type == "cpu" and dtype != torch.float32:
        from . import _C

        feats = _C.cpu_features()
        if not feats.get("avx512bf16"):
            warnings.warn(
                f"dtype={dtype} on a CPU without native bf16/fp16 matrix instructions (this CPU: "
                f"{feats['best']}): PyTorch's reduced-precision matmuls are emulated and much slower than "
                f"float32 here; use dtype=torch.float32 on this machine.", RuntimeWarning, stacklevel=2)
    model = build_sam_from_config(cfg, state)
    model.to(device=device)
    model.image_encoder.to(dtype)
    model.mask_decoder.to(decoder_dtype)
    return model.eval()
