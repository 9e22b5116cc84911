"""samfast custom ops for the prompt encoder (re-exported by `samfast.ops`).

prompt_tokens: the sparse embeddings of points and boxes behind the decoder's IoU and mask tokens, i.e.
`MaskDecoder.assemble_tokens(PromptEncoder(points, boxes)[0])`, in one C++ call (`_C.prompt_tokens_cpu`, CPU
float32). As ~20 torch ops on tiny tensors it cost ~0.3 ms per prompt when run right after a decoder call (cold
caches; 0.065 ms warm). Pure-PyTorch reference: `prompt_tokens_reference`.

mask_embed: SAM's `mask_downscaling` (Conv 2x2/s2 -> LayerNorm2d -> GELU -> Conv 2x2/s2 -> LayerNorm2d ->
GELU -> Conv 1x1) in one pass over the output pixels (`_C.mask_embed_cpu`, CPU float32): a mask prompt's
dense embedding [B, C, H/4, W/4] from its logits [B, 1, H, W]. As torch modules these are seven small
ops on tiny tensors (~0.6 ms of a mask-prompt predict, mostly per-op overhead). Pure-PyTorch reference:
`mask_embed_reference`. Import from `samfast.ops`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _C
from .ops import _check, _plain_eager, _shape, layer_norm_2d, tensor_ref, use_kernel

_PARAM_NAMES = ("w1", "b1", "ln1_w", "ln1_b", "w2", "b2", "ln2_w", "ln2_b", "w3", "b3")


def mask_embed_reference(mask: Tensor, params: Sequence[Tensor], eps1: float = 1e-6, eps2: float = 1e-6) -> Tensor:
    """The official `mask_downscaling` as functions. mask [B, 1, H, W]; params = (w1 [C1, 1, 2, 2], b1, ln1_w,
    ln1_b [C1], w2 [C2, C1, 2, 2], b2, ln2_w, ln2_b [C2], w3 [C, C2, 1, 1], b3 [C]) -> [B, C, H/4, W/4]."""
    w1, b1, n1w, n1b, w2, b2, n2w, n2b, w3, b3 = params
    x = F.gelu(layer_norm_2d(F.conv2d(mask, w1, b1, stride=2), n1w, n1b, eps1))
    x = F.gelu(layer_norm_2d(F.conv2d(x, w2, b2, stride=2), n2w, n2b, eps2))
    return F.conv2d(x, w3, b3)


def mask_downscaling_params(seq: nn.Module) -> Optional[tuple]:
    """(params, eps1, eps2) of a SAM `mask_downscaling` Sequential that `mask_embed` implements, else None."""
    from .modeling.common import LayerNorm2d

    try:
        c1, n1, a1, c2, n2, a2, c3 = list(seq)
    except (TypeError, ValueError):
        return None
    convs_ok = all(type(c) is nn.Conv2d and c.bias is not None and c.groups == 1 and c.padding == (0, 0)
                   and c.dilation == (1, 1) and c.padding_mode == "zeros" for c in (c1, c2, c3))
    if not convs_ok or (c1.kernel_size, c1.stride, c1.in_channels) != ((2, 2), (2, 2), 1) or \
            (c2.kernel_size, c2.stride) != ((2, 2), (2, 2)) or (c3.kernel_size, c3.stride) != ((1, 1), (1, 1)):
        return None
    if c2.in_channels != c1.out_channels or c3.in_channels != c2.out_channels:
        return None
    if type(n1) is not LayerNorm2d or type(n2) is not LayerNorm2d:
        return None
    if any(type(a) is not nn.GELU or a.approximate != "none" for a in (a1, a2)):
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in (seq, c1, n1, a1, c2, n2, a2, c3)):
        return None  # hooks would not run inside the kernel
    params = (c1.weight, c1.bias, n1.weight, n1.bias, c2.weight, c2.bias, n2.weight, n2.bias, c3.weight, c3.bias)
    return params, float(n1.eps), float(n2.eps)


@torch.library.custom_op("samfast::mask_embed", mutates_args=())
def _mask_embed_op(mask: Tensor, w1: Tensor, b1: Tensor, ln1_w: Tensor, ln1_b: Tensor, w2: Tensor, b2: Tensor,
                   ln2_w: Tensor, ln2_b: Tensor, w3: Tensor, b3: Tensor, eps1: float, eps2: float) -> Tensor:
    B, _, H, W = mask.shape
    out = mask.new_empty((B, w3.shape[0], H // 4, W // 4))
    refs = [tensor_ref(t) for t in (mask, w1, b1, ln1_w, ln1_b, w2, b2, ln2_w, ln2_b, w3, b3, out)]
    _C.mask_embed_cpu(*refs, eps1, eps2)
    return out


@_mask_embed_op.register_fake
def _(mask, w1, b1, ln1_w, ln1_b, w2, b2, ln2_w, ln2_b, w3, b3, eps1, eps2):
    B, _, H, W = mask.shape
    return mask.new_empty((B, w3.shape[0], H // 4, W // 4))


def mask_embed(mask: Tensor, params: Sequence[Tensor], eps1: float = 1e-6, eps2: float = 1e-6) -> Tensor:
    """Fused mask downscaling; see `mask_embed_reference` for the arguments. The kernel runs on non-empty float32
    CPU tensors when no gradient is needed (the C++ side checks every shape); anything else, or the reference
    backend, runs the reference."""
    _check(isinstance(mask, Tensor) and mask.dim() == 4 and mask.shape[1] == 1, ValueError,
           f"mask: expected [B, 1, H, W], got {_shape(mask)}")
    _check(mask.shape[2] % 4 == 0 and mask.shape[3] % 4 == 0, ValueError,
           f"mask: H and W must be multiples of 4 (two stride-2 convolutions), got {_shape(mask)}")
    _check(len(params) == len(_PARAM_NAMES), ValueError,
           f"params: expected {len(_PARAM_NAMES)} tensors ({', '.join(_PARAM_NAMES)}), got {len(params)}")
    for name, p in zip(_PARAM_NAMES, params):
        _check(isinstance(p, Tensor), TypeError, f"{name}: expected a tensor, got {type(p).__name__}")
    needs_grad = torch.is_grad_enabled() and (mask.requires_grad or any(p.requires_grad for p in params))
    if use_kernel("mask_embed", mask) and mask.dtype == torch.float32 and mask.numel() > 0 and not needs_grad \
            and all(p.dtype == torch.float32 and not p.is_cuda for p in params):
        return _mask_embed_op(mask.contiguous(), *(p.contiguous() for p in params), float(eps1), float(eps2))
    return mask_embed_reference(mask, params, eps1, eps2)


# --------------------------------------------------------------------------------------------
# prompt tokens: points / boxes -> sparse embeddings behind the IoU and mask tokens
# --------------------------------------------------------------------------------------------


def prompt_tokens_reference(coords: Tensor, labels: Tensor, boxes: Optional[Tensor], gauss: Tensor,
                            point_emb: Sequence[Tensor], not_a_point: Tensor, iou_token: Tensor, mask_tokens: Tensor,
                            pad: bool, input_size: Sequence[int]) -> Tensor:
    """The official prompt encoder's sparse embeddings behind the decoder's IoU and mask tokens.

    coords [B, Np, 2] (x, y, input-frame pixels), labels [B, Np] (-1 padding, 0 negative, 1 positive; other values
    get no label embedding), boxes [B, 4] XYXY or None, gauss [2, F] (the random Fourier matrix), point_emb: the four
    point_embeddings weights [1, C] (negative, positive, box corner 1, box corner 2), not_a_point / iou_token [1, C],
    mask_tokens [M, C], pad: append a padding point (official: when there is no box), input_size (H, W).
    Returns [B, 1 + M + Np + pad + 2 * (boxes given), C]."""
    H, W = input_size

    def pe(c):  # c [B, n, 2] already offset by 0.5, any float dtype (scaled in it, as officially) -> [B, n, C]
        a = 2 * math.pi * ((2 * (c / c.new_tensor([W, H])).to(gauss.dtype) - 1) @ gauss)
        return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)

    B = coords.shape[0]
    parts = [torch.cat([iou_token, mask_tokens], dim=0).unsqueeze(0).expand(B, -1, -1)]
    c, lab = coords + 0.5, labels
    if pad:
        c = torch.cat([c, c.new_zeros((B, 1, 2))], dim=1)
        lab = torch.cat([lab, -lab.new_ones((B, 1))], dim=1)
    if c.shape[1] > 0:
        e = torch.where((lab == -1)[..., None], not_a_point.expand(B, c.shape[1], -1), pe(c))
        parts.append(e + (lab == 0)[..., None] * point_emb[0] + (lab == 1)[..., None] * point_emb[1])
    if boxes is not None:
        parts.append(pe((boxes + 0.5).reshape(B, 2, 2)) + torch.cat([point_emb[2], point_emb[3]], dim=0))
    return torch.cat(parts, dim=1)


@torch.library.custom_op("samfast::prompt_tokens", mutates_args=())
def _prompt_tokens_op(coords: Tensor, labels: Tensor, boxes: Optional[Tensor], gauss: Tensor, pe0: Tensor,
                      pe1: Tensor, pe2: Tensor, pe3: Tensor, not_a_point: Tensor, iou_token: Tensor,
                      mask_tokens: Tensor, pad: bool, img_h: float, img_w: float) -> Tensor:
    return _prompt_tokens_impl(coords, labels, boxes, gauss, pe0, pe1, pe2, pe3, not_a_point, iou_token, mask_tokens,
                               pad, img_h, img_w)


def _prompt_tokens_shape(coords, boxes, mask_tokens, pad):
    B, Np = coords.shape[:2]
    return B, 1 + mask_tokens.shape[0] + Np + int(pad) + (2 if boxes is not None else 0), mask_tokens.shape[1]


def _prompt_tokens_impl(coords, labels, boxes, gauss, pe0, pe1, pe2, pe3, not_a_point, iou_token, mask_tokens, pad,
                        img_h, img_w):
    out = coords.new_empty(_prompt_tokens_shape(coords, boxes, mask_tokens, pad))
    refs = [tensor_ref(t) for t in (coords, labels, boxes if boxes is not None else coords, gauss, pe0, pe1, pe2, pe3,
                                     not_a_point, iou_token, mask_tokens, out)]
    _C.prompt_tokens_cpu(*refs, boxes is not None, bool(pad), float(img_h), float(img_w))
    return out


@_prompt_tokens_op.register_fake
def _(coords, labels, boxes, gauss, pe0, pe1, pe2, pe3, not_a_point, iou_token, mask_tokens, pad, img_h, img_w):
    return coords.new_empty(_prompt_tokens_shape(coords, boxes, mask_tokens, pad))


def prompt_tokens(coords: Optional[Tensor], labels: Optional[Tensor], boxes: Optional[Tensor], gauss: Tensor,
                  point_emb: Sequence[Tensor], not_a_point: Tensor, iou_token: Tensor, mask_tokens: Tensor,
                  pad: bool, input_size: Sequence[int]) -> Tensor:
    """Prompt tokens [B, T, C]; see `prompt_tokens_reference` (coords / labels may be None: no points). The kernel
    runs on float32 CPU tensors with signed-integer or bool labels when no gradient is needed (the C++ side checks
    every shape); anything else runs the reference."""
    if coords is None:
        _check(labels is None, ValueError, "labels given without coords")
        _check(isinstance(boxes, Tensor) and boxes.dim() == 2, ValueError,
               f"boxes: expected [B, 4] when there are no points, got {_shape(boxes)}")
        coords = boxes.new_zeros((boxes.shape[0], 0, 2))
        labels = torch.zeros((boxes.shape[0], 0), dtype=torch.int64, device=boxes.device)
    if not (isinstance(coords, Tensor) and coords.dim() == 3 and coords.shape[-1] == 2):
        raise ValueError(f"coords: expected [B, Np, 2], got {_shape(coords)}")
    if not (isinstance(labels, Tensor) and tuple(labels.shape) == tuple(coords.shape[:2])):
        raise ValueError(f"labels: expected [B, Np] = {list(coords.shape[:2])}, got {_shape(labels)}")
    _check(len(point_emb) == 4, ValueError, f"point_emb: expected 4 tensors, got {len(point_emb)}")
    tensors = [coords, gauss, *point_emb, not_a_point, iou_token, mask_tokens] + ([boxes] if boxes is not None else [])
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    # labels: the official compares them with -1 / 0 / 1 in their own dtype (0.5 matches none; uint8 255 == -1)
    labels_ok = labels.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
    if use_kernel("prompt_tokens", coords) and not needs_grad and labels_ok and \
            all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors):
        run = _prompt_tokens_impl if _plain_eager(coords) else _prompt_tokens_op
        return run(coords.contiguous(), labels.to(torch.int64).contiguous(),
                   boxes.contiguous() if boxes is not None else None, gauss.contiguous(),
                   *(p.contiguous() for p in point_emb), not_a_point.contiguous(), iou_token.contiguous(),
                   mask_tokens.contiguous(), bool(pad), float(input_size[0]), float(input_size[1]))
    return prompt_tokens_reference(coords, labels, boxes, gauss, point_emb, not_a_point, iou_token, mask_tokens, pad,
                                   input_size)
