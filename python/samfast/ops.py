"""samfast custom ops: each compiled kernel in `samfast._C` wrapped as a `torch.library.custom_op`.

`_C` takes raw pointers + shapes + dtype (+ CUDA stream) and validates them; this module turns
tensors into `_C.TensorRef`s, allocates outputs, and gives every op a fake (meta) implementation so
it traces under `torch.compile` and records into CUDA graphs. Every op also has a pure-PyTorch
reference (`*_reference`), which `set_backend("reference")` runs instead of the kernels.

Sections (one per kernel family; add new ones at the end, before the anchor comment):
  backend switch + helpers | rel-pos attention | mask head | mask postprocessing | ...
and, in their own files: the decoder's cross attentions (ops_decoder.py), the whole decoder in one call
(ops_cached_decoder.py), automatic mask generation (ops_amg.py), the prompt encoder's mask embedding and prompt
tokens (ops_prompt.py). In plain no-grad eager calls some wrappers run the kernel without its op (`_plain_eager`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _C

# --------------------------------------------------------------------------------------------
# backend switch + helpers
# --------------------------------------------------------------------------------------------

_BACKENDS = ("kernels", "reference")
_backend = "kernels"


def set_backend(name: str) -> None:
    """Select "kernels" (samfast's C++/CUDA kernels, default) or "reference" (pure PyTorch)."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


def set_num_threads(n: int) -> None:
    """CPU threads for samfast: its C++ kernels (OpenMP; applied on every call, from whichever Python thread
    calls) and PyTorch's own CPU ops (`torch.set_num_threads`). For sharing a robot's cores with other nodes."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    torch.set_num_threads(n)
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """Threads samfast's CPU kernels use now: the `set_num_threads` value, else OpenMP's default."""
    return int(_C.kernel_threads())


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Context manager: `with samfast.ops.backend("reference"): ...`."""
    old = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


_FLOAT_KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.bfloat16),
    "cuda": (torch.float32, torch.float16, torch.bfloat16),
}


def use_kernel(name: str, *tensors: Tensor, float_op: bool = False) -> bool:
    """True when the kernel backend is selected and `_C` has `name_{cpu|cuda}` for these tensors.

    float_op: the kernel takes floating-point data in the dtypes its device supports (CPU: float32,
    bfloat16; CUDA: also float16); other dtypes run the PyTorch reference."""
    if _backend != "kernels":
        return False
    dev = "cuda" if tensors and tensors[0].is_cuda else "cpu"
    if float_op and tensors and tensors[0].dtype not in _FLOAT_KERNEL_DTYPES[dev]:
        return False
    return hasattr(_C, f"{name}_{dev}")


_DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float64: "float64", torch.int32: "int32", torch.int64: "int64",
    torch.uint8: "uint8", torch.bool: "bool",
}


def tensor_ref(t: Tensor) -> "_C.TensorRef":
    """Borrowed view of `t` for `_C` (the tensor must outlive the call)."""
    if t.dtype not in _DTYPE_NAMES:
        raise TypeError(f"samfast kernels do not support dtype {t.dtype}")
    dev = t.device.index if t.is_cuda else -1
    if t.is_cuda and dev is None:
        dev = torch.cuda.current_device()
    return _C.TensorRef(t.data_ptr(), list(t.shape), list(t.stride()), _DTYPE_NAMES[t.dtype], dev)


def cuda_stream(t: Tensor) -> int:
    """Raw handle of the current CUDA stream on `t`'s device (0 on CPU)."""
    if not t.is_cuda:
        return 0
    return torch.cuda.current_stream(t.device).cuda_stream


def _plain_eager(t: Tensor) -> bool:
    """True where a kernel may be called without its custom op: a plain tensor, no autograd recording, no tracing
    (torch.compile, fake tensors or any other dispatch mode active). The custom ops are what torch.compile, export
    and opcheck see; in plain eager inference they only add the dispatcher's per-call cost (tens of µs per call
    right after a decoder call has evicted the caches)."""
    if torch.compiler.is_compiling():  # first: the rest is not traceable
        return False
    stack_len = getattr(torch._C, "_len_torch_dispatch_stack", None)
    functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)  # vmap / grad wrap tensors
    return (type(t) is Tensor and t.device.type in ("cpu", "cuda") and not torch.is_grad_enabled()
            and stack_len is not None and stack_len() == 0 and functorch_active is not None and not functorch_active())


def _check(cond: bool, exc: type, msg: str) -> None:
    if not cond:
        raise exc(msg)


# --------------------------------------------------------------------------------------------
# rel-pos attention (ViT encoder, windowed + global blocks)
# --------------------------------------------------------------------------------------------


def get_rel_pos(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    """Relative-position table gathered per (query, key) pair: (L, C) -> (q_size, k_size, C).

    Same as segment_anything's `get_rel_pos` (linear interpolation when L != 2*max(q,k)-1)."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        rel_pos_resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        )
        rel_pos_resized = rel_pos_resized.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        rel_pos_resized = rel_pos
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos_resized[relative_coords.long().to(rel_pos.device)]


def _check_attention_args(qkv, qkv_bias, rel_h, rel_w, num_heads, window_size) -> None:
    _check(isinstance(qkv, Tensor) and qkv.dim() == 4, ValueError,
           f"qkv: expected a [B, H, W, 3*C] tensor, got {_shape(qkv)}")
    B, H, W, C3 = qkv.shape
    _check(num_heads > 0 and C3 % (3 * num_heads) == 0, ValueError,
           f"qkv: last dim {C3} must be 3 * num_heads ({num_heads}) * head_dim")
    hd = C3 // 3 // num_heads
    _check(window_size >= 0, ValueError, f"window_size must be >= 0, got {window_size}")
    sh, sw = (window_size, window_size) if window_size > 0 else (H, W)
    _check(qkv_bias.shape == (C3,), ValueError, f"qkv_bias: expected shape [{C3}], got {_shape(qkv_bias)}")
    _check(tuple(rel_h.shape) == (sh, sh, hd), ValueError,
           f"rel_h: expected shape [{sh}, {sh}, {hd}], got {_shape(rel_h)}")
    _check(tuple(rel_w.shape) == (sw, sw, hd), ValueError,
           f"rel_w: expected shape [{sw}, {sw}, {hd}], got {_shape(rel_w)}")
    for name, t in (("qkv_bias", qkv_bias), ("rel_h", rel_h), ("rel_w", rel_w)):
        _check(t.dtype == qkv.dtype, TypeError, f"{name}: dtype {t.dtype} differs from qkv's {qkv.dtype}")
        _check(t.device == qkv.device, ValueError, f"{name}: on {t.device}, qkv on {qkv.device}")


def _shape(t) -> str:
    return list(t.shape).__repr__() if isinstance(t, Tensor) else type(t).__name__


def rel_pos_attention_reference(
    qkv: Tensor, qkv_bias: Tensor, rel_h: Tensor, rel_w: Tensor, num_heads: int, window_size: int
) -> Tensor:
    """Multi-head attention with decomposed rel-pos bias, exactly as segment_anything's ViT block.

    qkv: [B, H, W, 3*C] output of the qkv linear (layout 3 x heads x head_dim on the last axis)
    qkv_bias: [3*C] (the qkv linear's bias: what padded tokens hold, as they are zero before the linear)
    rel_h: [Sh, Sh, hd], rel_w: [Sw, Sw, hd] from `get_rel_pos` (S = window_size, or H / W when global)
    window_size: 0 = global attention over H x W; > 0 = windows over the grid padded to a multiple.
    Returns [B, H, W, C].
    """
    B, H, W, C3 = qkv.shape
    C = C3 // 3
    hd = C // num_heads
    x = qkv
    if window_size > 0:
        ws = window_size
        Hp, Wp = H + (ws - H % ws) % ws, W + (ws - W % ws) % ws
        if (Hp, Wp) != (H, W):
            x = qkv_bias.to(qkv.dtype).expand(B, Hp, Wp, C3).clone()
            x[:, :H, :W] = qkv
        x = x.view(B, Hp // ws, ws, Wp // ws, ws, C3).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, C3)
        qh = qw = ws
    else:
        qh, qw = H, W
    Bn = x.shape[0]
    q, k, v = x.reshape(Bn, qh * qw, 3, num_heads, hd).permute(2, 0, 3, 1, 4).reshape(
        3, Bn * num_heads, qh * qw, hd).unbind(0)
    attn = (q * hd**-0.5) @ k.transpose(-2, -1)
    r_q = q.reshape(Bn * num_heads, qh, qw, hd)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h)
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w)
    attn = (attn.view(-1, qh, qw, qh, qw) + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).view(
        -1, qh * qw, qh * qw)
    attn = attn.softmax(dim=-1)
    out = (attn @ v).view(Bn, num_heads, qh, qw, hd).permute(0, 2, 3, 1, 4).reshape(Bn, qh, qw, C)
    if window_size > 0:
        ws = window_size
        out = out.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        out = out[:, :H, :W, :].contiguous()
    return out


@torch.library.custom_op("samfast::rel_pos_attention", mutates_args=())
def _rel_pos_attention_op(
    qkv: Tensor, qkv_bias: Tensor, rel_h: Tensor, rel_w: Tensor, num_heads: int, window_size: int
) -> Tensor:
    B, H, W, C3 = qkv.shape
    out = qkv.new_empty((B, H, W, C3 // 3))
    refs = [tensor_ref(t) for t in (qkv, qkv_bias, rel_h, rel_w, out)]
    if qkv.is_cuda:
        _C.rel_pos_attention_cuda(*refs, num_heads, window_size, cuda_stream(qkv))
    else:
        _C.rel_pos_attention_cpu(*refs, num_heads, window_size)
    return out


@_rel_pos_attention_op.register_fake
def _(qkv, qkv_bias, rel_h, rel_w, num_heads, window_size):
    B, H, W, C3 = qkv.shape
    return qkv.new_empty((B, H, W, C3 // 3))


def rel_pos_attention(
    qkv: Tensor, qkv_bias: Tensor, rel_h: Tensor, rel_w: Tensor, num_heads: int, window_size: int
) -> Tensor:
    """See `rel_pos_attention_reference` for the contract. Kernel when available, else reference."""
    _check_attention_args(qkv, qkv_bias, rel_h, rel_w, num_heads, window_size)
    if use_kernel("rel_pos_attention", qkv, float_op=True):
        qkv, qkv_bias, rel_h, rel_w = (t.contiguous() for t in (qkv, qkv_bias, rel_h, rel_w))
        return _rel_pos_attention_op(qkv, qkv_bias, rel_h, rel_w, num_heads, window_size)
    return rel_pos_attention_reference(qkv, qkv_bias, rel_h, rel_w, num_heads, window_size)


# --------------------------------------------------------------------------------------------
# mask head: ConvT 2x2 -> LayerNorm2d -> GELU -> ConvT 2x2 -> GELU -> dot with hypernetwork weights
# --------------------------------------------------------------------------------------------


def layer_norm_2d(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """segment_anything's LayerNorm2d: LayerNorm over the channels of a BxCxHxW tensor (biased variance)."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return weight[:, None, None] * x + bias[:, None, None]


def mask_head_reference(
    src: Tensor, w1: Tensor, b1: Tensor, ln_w: Tensor, ln_b: Tensor, w2: Tensor, b2: Tensor,
    hyper_in: Tensor, eps: float = 1e-6,
) -> Tensor:
    """segment_anything's `output_upscaling` followed by `hyper_in @ upscaled`.

    src: [B, h, w, C] decoder image tokens (C = 256), w1: [C, C1, 2, 2], b1/ln_w/ln_b: [C1],
    w2: [C1, C2, 2, 2], b2: [C2], hyper_in: [B, M, C2]. Returns mask logits [B, M, 4h, 4w]."""
    x = src.permute(0, 3, 1, 2)
    x = F.gelu(layer_norm_2d(F.conv_transpose2d(x, w1, b1, stride=2), ln_w, ln_b, eps))
    x = F.gelu(F.conv_transpose2d(x, w2, b2, stride=2))
    b, c, h, w = x.shape
    return (hyper_in @ x.reshape(b, c, h * w)).view(b, -1, h, w)


def _check_mask_head_args(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in) -> None:
    _check(isinstance(src, Tensor) and src.dim() == 4, ValueError,
           f"src: expected [B, h, w, C], got {_shape(src)}")
    B, h, w, C = src.shape
    _check(w1.dim() == 4 and w1.shape[0] == C and tuple(w1.shape[2:]) == (2, 2), ValueError,
           f"w1: expected [{C}, C1, 2, 2], got {_shape(w1)}")
    C1 = w1.shape[1]
    for name, t in (("b1", b1), ("ln_w", ln_w), ("ln_b", ln_b)):
        _check(tuple(t.shape) == (C1,), ValueError, f"{name}: expected [{C1}], got {_shape(t)}")
    _check(w2.dim() == 4 and w2.shape[0] == C1 and tuple(w2.shape[2:]) == (2, 2), ValueError,
           f"w2: expected [{C1}, C2, 2, 2], got {_shape(w2)}")
    C2 = w2.shape[1]
    _check(tuple(b2.shape) == (C2,), ValueError, f"b2: expected [{C2}], got {_shape(b2)}")
    _check(hyper_in.dim() == 3 and hyper_in.shape[0] == B and hyper_in.shape[2] == C2, ValueError,
           f"hyper_in: expected [{B}, M, {C2}], got {_shape(hyper_in)}")
    for name, t in (("w1", w1), ("b1", b1), ("ln_w", ln_w), ("ln_b", ln_b), ("w2", w2), ("b2", b2),
                    ("hyper_in", hyper_in)):
        _check(t.dtype == src.dtype, TypeError, f"{name}: dtype {t.dtype} differs from src's {src.dtype}")
        _check(t.device == src.device, ValueError, f"{name}: on {t.device}, src on {src.device}")


@torch.library.custom_op("samfast::mask_head", mutates_args=())
def _mask_head_op(
    src: Tensor, w1: Tensor, b1: Tensor, ln_w: Tensor, ln_b: Tensor, w2: Tensor, b2: Tensor,
    hyper_in: Tensor,
) -> Tensor:
    B, h, w, _ = src.shape
    out = src.new_empty((B, hyper_in.shape[1], 4 * h, 4 * w))
    refs = [tensor_ref(t) for t in (src, w1, b1, ln_w, ln_b, w2, b2, hyper_in, out)]
    if src.is_cuda:
        _C.mask_head_cuda(*refs, cuda_stream(src))
    else:
        _C.mask_head_cpu(*refs)
    return out


@_mask_head_op.register_fake
def _(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in):
    B, h, w, _ = src.shape
    return src.new_empty((B, hyper_in.shape[1], 4 * h, 4 * w))


def mask_head(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in) -> Tensor:
    """Fused decoder upsampling + dynamic mask head; see `mask_head_reference` for shapes."""
    _check_mask_head_args(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in)
    if use_kernel("mask_head", src, float_op=True):
        args = [t.contiguous() for t in (src, w1, b1, ln_w, ln_b, w2, b2, hyper_in)]
        return _mask_head_op(*args)
    return mask_head_reference(src, w1, b1, ln_w, ln_b, w2, b2, hyper_in)


# --------------------------------------------------------------------------------------------
# mask postprocessing: low-res logits -> (img_size crop) -> original size [-> threshold]
# --------------------------------------------------------------------------------------------


def postprocess_masks_reference(
    masks: Tensor, img_size: int, input_size: Sequence[int], original_size: Sequence[int],
    threshold: Optional[float] = None,
) -> Tensor:
    """segment_anything's `Sam.postprocess_masks` (+ `> threshold` when given).

    masks: [B, M, h, w] low-res logits. Returns [B, M, H0, W0] float logits, or bool masks."""
    x = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x > threshold if threshold is not None else x


def _postprocess_masks_impl(
    masks: Tensor, img_size: int, input_h: int, input_w: int, out_h: int, out_w: int,
    threshold: float, binarize: bool,
) -> Tensor:
    B, M = masks.shape[:2]
    out = masks.new_empty((B, M, out_h, out_w), dtype=torch.bool if binarize else masks.dtype)
    refs = [tensor_ref(masks), tensor_ref(out)]
    if masks.is_cuda:
        _C.postprocess_masks_cuda(*refs, img_size, input_h, input_w, threshold, binarize, cuda_stream(masks))
    else:
        _C.postprocess_masks_cpu(*refs, img_size, input_h, input_w, threshold, binarize)
    return out


_postprocess_masks_op = torch.library.custom_op("samfast::postprocess_masks", _postprocess_masks_impl, mutates_args=())


@_postprocess_masks_op.register_fake
def _(masks, img_size, input_h, input_w, out_h, out_w, threshold, binarize):
    B, M = masks.shape[:2]
    return masks.new_empty((B, M, out_h, out_w), dtype=torch.bool if binarize else masks.dtype)


def _postprocess_sizes(img_size: int, input_size: Sequence[int], original_size: Sequence[int]):
    """Checked (input_h, input_w, out_h, out_w) of a mask postprocessing call."""
    ih, iw = (int(v) for v in input_size)
    oh, ow = (int(v) for v in original_size)
    _check(0 < ih <= img_size and 0 < iw <= img_size, ValueError,
           f"input_size {tuple(input_size)} must lie within img_size {img_size}")
    _check(oh > 0 and ow > 0, ValueError, f"original_size must be positive, got {tuple(original_size)}")
    return ih, iw, oh, ow


def postprocess_masks(
    masks: Tensor, img_size: int, input_size: Sequence[int], original_size: Sequence[int],
    threshold: Optional[float] = None,
) -> Tensor:
    """Fused two-step bilinear resize (+ threshold); see `postprocess_masks_reference`."""
    _check(isinstance(masks, Tensor) and masks.dim() == 4, ValueError,
           f"masks: expected [B, M, h, w], got {_shape(masks)}")
    _check(masks.is_floating_point(), TypeError, f"masks: expected a float tensor, got {masks.dtype}")
    ih, iw, oh, ow = _postprocess_sizes(img_size, input_size, original_size)
    if use_kernel("postprocess_masks", masks, float_op=True):
        run = _postprocess_masks_impl if _plain_eager(masks) else _postprocess_masks_op
        return run(masks.contiguous(), img_size, ih, iw, oh, ow, 0.0 if threshold is None else float(threshold),
                   threshold is not None)
    return postprocess_masks_reference(masks, img_size, (ih, iw), (oh, ow), threshold)


# --------------------------------------------------------------------------------------------
# hypernetwork MLPs: one 3-layer MLP per mask token, all tokens in one launch
# --------------------------------------------------------------------------------------------


def hypernet_mlps_reference(
    tokens: Tensor, w0: Tensor, b0: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> Tensor:
    """segment_anything's `output_hypernetworks_mlps` stacked: for each mask token m,
    relu(relu(x @ w0[m]^T + b0[m]) @ w1[m]^T + b1[m]) @ w2[m]^T + b2[m] (nn.Linear weights [out, in]).

    tokens: [B, M, C], w0/w1: [M, C, C], b0/b1: [M, C], w2: [M, C2, C], b2: [M, C2]. Returns [B, M, C2]."""
    x = torch.relu(torch.einsum("bmi,moi->bmo", tokens, w0) + b0)
    x = torch.relu(torch.einsum("bmi,moi->bmo", x, w1) + b1)
    return torch.einsum("bmi,moi->bmo", x, w2) + b2


def _check_hypernet_args(tokens, w0, b0, w1, b1, w2, b2) -> None:
    _check(isinstance(tokens, Tensor) and tokens.dim() == 3, ValueError,
           f"tokens: expected [B, M, C], got {_shape(tokens)}")
    B, M, C = tokens.shape
    for name, t in (("w0", w0), ("w1", w1)):
        _check(tuple(t.shape) == (M, C, C), ValueError, f"{name}: expected [{M}, {C}, {C}], got {_shape(t)}")
    for name, t in (("b0", b0), ("b1", b1)):
        _check(tuple(t.shape) == (M, C), ValueError, f"{name}: expected [{M}, {C}], got {_shape(t)}")
    _check(w2.dim() == 3 and w2.shape[0] == M and w2.shape[2] == C, ValueError,
           f"w2: expected [{M}, C2, {C}], got {_shape(w2)}")
    C2 = w2.shape[1]
    _check(tuple(b2.shape) == (M, C2), ValueError, f"b2: expected [{M}, {C2}], got {_shape(b2)}")
    for name, t in (("w0", w0), ("b0", b0), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        _check(t.dtype == tokens.dtype, TypeError, f"{name}: dtype {t.dtype} differs from tokens' {tokens.dtype}")
        _check(t.device == tokens.device, ValueError, f"{name}: on {t.device}, tokens on {tokens.device}")


@torch.library.custom_op("samfast::hypernet_mlps", mutates_args=())
def _hypernet_mlps_op(
    tokens: Tensor, w0: Tensor, b0: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
) -> Tensor:
    B, M, _ = tokens.shape
    out = tokens.new_empty((B, M, w2.shape[1]))
    if tokens.is_cuda:
        refs = [tensor_ref(t) for t in (tokens, w0, b0, w1, b1, w2, b2, out)]
        _C.hypernet_mlps_cuda(*refs, cuda_stream(tokens))
    else:  # no CPU kernel: the reference is already a few batched GEMMs
        out.copy_(hypernet_mlps_reference(tokens, w0, b0, w1, b1, w2, b2))
    return out


@_hypernet_mlps_op.register_fake
def _(tokens, w0, b0, w1, b1, w2, b2):
    B, M, _ = tokens.shape
    return tokens.new_empty((B, M, w2.shape[1]))


def hypernet_mlps(tokens, w0, b0, w1, b1, w2, b2) -> Tensor:
    """All mask tokens' hypernetwork MLPs at once; see `hypernet_mlps_reference` for shapes."""
    _check_hypernet_args(tokens, w0, b0, w1, b1, w2, b2)
    if use_kernel("hypernet_mlps", tokens, float_op=True):
        args = [t.contiguous() for t in (tokens, w0, b0, w1, b1, w2, b2)]
        return _hypernet_mlps_op(*args)
    return hypernet_mlps_reference(tokens, w0, b0, w1, b1, w2, b2)


# ---- new op sections go above this line (keep this anchor) ----

# The decoder's attention ops (ops_decoder.py), the whole-decoder op (ops_cached_decoder.py), the
# automatic-mask-generation ops (ops_amg.py) and the prompt encoder's ops (ops_prompt.py) live
# in their own files (file length); they are part of this namespace.
from . import ops_amg as _ops_amg  # noqa: E402
from . import ops_cached_decoder as _ops_cached_decoder  # noqa: E402
from . import ops_decoder as _ops_decoder  # noqa: E402
from . import ops_prompt as _ops_prompt  # noqa: E402

for _mod in (_ops_decoder, _ops_cached_decoder, _ops_amg, _ops_prompt):
    globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__") and k not in globals()})
