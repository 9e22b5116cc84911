"""fp32 / bf16 linears through oneDNN with pre-packed weights (CPU image encoder hot path).

PyTorch's fp32 `F.linear` on CPU calls MKL's sgemm, which on AMD CPUs runs its AVX2 code even where
the CPU has AVX-512. oneDNN (bundled with PyTorch) dispatches on the CPU's features instead; with the
weight reordered once into its blocked layout and GELU fused into the GEMM epilogue, a ViT-B MLP linear
(4096x768 @ 768x3072) ran at 360 GFLOP/s against 165 for `F.gelu(F.linear(...))` on the 2-vCPU
AVX-512 reference machine (benchmarks/RESULTS.md). Results are fp32-exact to rounding (oneDNN's
default strict fp32 math; checked against float64 in tests).

bf16 models take the same path on CPUs with AVX512-BF16 (a vit_b MLP linear + GELU: 950 GFLOP/s packed
and fused vs 545 for torch's bf16 `F.linear` + `F.gelu`).

Used when the kernels backend is on, the input is a CPU float32 (or bfloat16, matching the weight)
tensor that needs no gradient, the
GEMM has >= MIN_ROWS rows or the weight >= MIN_WEIGHT elements (the decoder's token MLP, 7 x 256 @
256 x 2048: 40 us packed vs 109 us, where MKL repacks the 2 MB weight on every call), and
SAMFAST_ONEDNN_LINEAR allows it: "auto" (default: CPUs with AVX-512),
"1" (always), "0" (never); bf16 always needs AVX512-BF16. The packed copy costs one more copy of each packed weight in memory; it is
rebuilt when the weight changes (moved, reloaded or edited in place).
"""
from __future__ import annotations

import os
import weakref

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS = 256
MIN_WEIGHT = 1 << 19
_PACK_BATCH_HINT = 4096  # oneDNN's layout hint (any row count works)
_avx512 = None  # (AVX-512F, AVX512-BF16), read once
_DTYPES = (torch.float32, torch.bfloat16)
# module -> (weight key, packed weight); kept outside the module so copying, pickling and exporting the
# model never see the opaque oneDNN tensor
_PACKED: "weakref.WeakKeyDictionary[nn.Linear, tuple]" = weakref.WeakKeyDictionary()


def _ops_available() -> bool:
    mk = getattr(torch.ops, "mkldnn", None)
    try:
        return (mk is not None and hasattr(mk, "_linear_pointwise") and hasattr(mk, "_reorder_linear_weight")
                and torch.backends.mkldnn.is_available())
    except (AttributeError, RuntimeError):
        return False


def _mode() -> str:
    return os.environ.get("SAMFAST_ONEDNN_LINEAR", "auto")


def use_packed(mod: nn.Linear, x: torch.Tensor) -> bool:
    global _avx512
    mode = _mode()
    if mode == "0" or x.device.type != "cpu" or x.dtype not in _DTYPES or mod.weight.dtype != x.dtype:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or mod.weight.requires_grad):
        return False
    if x.numel() < MIN_ROWS * mod.in_features and mod.weight.numel() < MIN_WEIGHT:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    from .. import ops  # late: the modeling package is imported by ops users

    if ops.get_backend() != "kernels":
        return False
    if _avx512 is None:
        from .. import _C

        f = _C.cpu_features()
        _avx512 = (bool(f.get("avx512f", False)), bool(f.get("avx512bf16", False)))
    if x.dtype == torch.bfloat16 and not _avx512[1]:  # bf16 only with native AVX512-BF16, in every mode
        return False
    if mode == "auto" and not _avx512[0]:
        return False
    return _ops_available()


def _packed_weight(mod: nn.Linear) -> torch.Tensor:
    w = mod.weight
    key = (w.data_ptr(), w._version, tuple(w.shape))
    cached = _PACKED.get(mod)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), _PACK_BATCH_HINT))
        _PACKED[mod] = cached
    return cached[1]


_ACTS = {None: ("none", ""), "gelu": ("gelu", "none"), "relu": ("relu", "")}


def linear(mod: nn.Linear, x: torch.Tensor, act: str = None) -> torch.Tensor:
    """mod(x), then `act` ("gelu": exact erf GELU, "relu", or None); oneDNN-packed with the activation
    fused when `use_packed`, else F.linear."""
    if act not in _ACTS:
        raise ValueError(f"act: expected one of {list(_ACTS)}, got {act!r}")
    if use_packed(mod, x):
        b = mod.bias.detach() if mod.bias is not None else None
        attr, algo = _ACTS[act]
        return torch.ops.mkldnn._linear_pointwise(x, _packed_weight(mod), b, attr, [], algo)
    y = F.linear(x, mod.weight, mod.bias)
    if act == "gelu":
        return F.gelu(y)
    return F.relu(y) if act == "relu" else y
