"""samfast custom ops for the mask decoder's cross attentions (re-exported by `samfast.ops`).

With few prompt tokens T and many image tokens N, the fast decoder folds the attention projections into
the token side (see fast_decoder.py); these two kernels then do the image-sized work:
  image_to_token_attention: image rows attend to the tokens, + residual + LayerNorm (one pass);
  token_to_image_attention: token rows attend to the image tokens, keys x + pe formed on the fly,
                            online softmax over N (no [B, Q, N] scores, no x + pe in memory).
Each is a `torch.library.custom_op` over `samfast._C` (CPU, float32) with a fake impl and a
pure-PyTorch `*_reference`. Import from `samfast.ops`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _C
from .ops import _check, _shape, tensor_ref, use_kernel

# --------------------------------------------------------------------------------------------
# image->token attention: decoder cross attention (image rows attend to tokens) + residual + LayerNorm
# --------------------------------------------------------------------------------------------


def image_to_token_attention_reference(
    q_in: Tensor, q_add: Optional[Tensor], u: Tensor, cb: Tensor, r: Tensor, out_bias: Tensor,
    residual: Tensor, ln_w: Tensor, ln_b: Tensor, eps: float, num_heads: int,
) -> Tensor:
    """LayerNorm(residual + softmax_t((q_in + q_add) @ u + cb) @ r + out_bias) * ln_w + ln_b.

    q_in: [Bq, N, Cq] (Bq = 1 or B), q_add: [N, Cq] or None, u: [B, Cq, T*H] (column j = t*H + h,
    token-major), cb: [B, T*H], r: [B, T*H, C] (row t*H + h), out_bias/ln_w/ln_b: [C], residual: [Bx, N, C] (Bx = 1 or B).
    The softmax runs over each head's T scores. Returns [B, N, C]."""
    B, _, HT = u.shape
    q = q_in if q_add is None else q_in + q_add
    N = q.shape[1]
    s = torch.matmul(q, u) + cb[:, None, :]  # [B, N, HT]
    p = torch.softmax(s.view(B, N, HT // num_heads, num_heads), dim=-2).view(B, N, HT)
    y = residual + (torch.matmul(p, r) + out_bias)
    return F.layer_norm(y, (y.shape[-1],), ln_w, ln_b, eps)


def _check_i2t_args(q_in, q_add, u, cb, r, out_bias, residual, ln_w, ln_b, num_heads) -> None:
    _check(isinstance(u, Tensor) and u.dim() == 3, ValueError, f"u: expected [B, Cq, T*H], got {_shape(u)}")
    B, Cq, HT = u.shape
    _check(num_heads > 0 and HT > 0 and HT % num_heads == 0, ValueError,
           f"u: last dim {HT} must be a positive multiple of num_heads ({num_heads})")
    _check(isinstance(q_in, Tensor) and q_in.dim() == 3 and q_in.shape[0] in (1, B) and q_in.shape[2] == Cq,
           ValueError, f"q_in: expected [1 or {B}, N, {Cq}], got {_shape(q_in)}")
    N = q_in.shape[1]
    if q_add is not None:
        _check(tuple(q_add.shape) == (N, Cq), ValueError, f"q_add: expected [{N}, {Cq}], got {_shape(q_add)}")
    _check(tuple(cb.shape) == (B, HT), ValueError, f"cb: expected [{B}, {HT}], got {_shape(cb)}")
    _check(r.dim() == 3 and tuple(r.shape[:2]) == (B, HT), ValueError,
           f"r: expected [{B}, {HT}, C], got {_shape(r)}")
    C = r.shape[2]
    for name, t in (("out_bias", out_bias), ("ln_w", ln_w), ("ln_b", ln_b)):
        _check(tuple(t.shape) == (C,), ValueError, f"{name}: expected [{C}], got {_shape(t)}")
    _check(residual.dim() == 3 and residual.shape[0] in (1, B) and tuple(residual.shape[1:]) == (N, C),
           ValueError, f"residual: expected [1 or {B}, {N}, {C}], got {_shape(residual)}")
    named = [("q_add", q_add), ("u", u), ("cb", cb), ("r", r), ("out_bias", out_bias), ("residual", residual),
             ("ln_w", ln_w), ("ln_b", ln_b)]
    for name, t in named:
        if t is None:
            continue
        _check(t.dtype == q_in.dtype, TypeError, f"{name}: dtype {t.dtype} differs from q_in's {q_in.dtype}")
        _check(t.device == q_in.device, ValueError, f"{name}: on {t.device}, q_in on {q_in.device}")


@torch.library.custom_op("samfast::image_to_token_attention", mutates_args=())
def _image_to_token_op(
    q_in: Tensor, q_add: Optional[Tensor], u: Tensor, cb: Tensor, r: Tensor, out_bias: Tensor,
    residual: Tensor, ln_w: Tensor, ln_b: Tensor, eps: float, num_heads: int,
) -> Tensor:
    B, _, C = r.shape
    out = q_in.new_empty((B, q_in.shape[1], C))
    qa = q_add if q_add is not None else q_in.new_empty(0)
    refs = [tensor_ref(t) for t in (q_in, qa, u, cb, r, out_bias, residual, ln_w, ln_b, out)]
    _C.image_to_token_attention_cpu(*refs, float(eps), int(num_heads))
    return out


@_image_to_token_op.register_fake
def _(q_in, q_add, u, cb, r, out_bias, residual, ln_w, ln_b, eps, num_heads):
    return q_in.new_empty((r.shape[0], q_in.shape[1], r.shape[2]))


def image_to_token_attention(
    q_in: Tensor, q_add: Optional[Tensor], u: Tensor, cb: Tensor, r: Tensor, out_bias: Tensor,
    residual: Tensor, ln_w: Tensor, ln_b: Tensor, eps: float, num_heads: int,
) -> Tensor:
    """Fused image->token attention + residual + LayerNorm; see `image_to_token_attention_reference`."""
    _check_i2t_args(q_in, q_add, u, cb, r, out_bias, residual, ln_w, ln_b, num_heads)
    if q_in.dtype == torch.float32 and not q_in.is_cuda and use_kernel("image_to_token_attention", q_in,
                                                                        float_op=True):
        q_add = q_add.contiguous() if q_add is not None else None
        args = [t.contiguous() for t in (u, cb, r, out_bias, residual, ln_w, ln_b)]
        return _image_to_token_op(q_in.contiguous(), q_add, *args, float(eps), int(num_heads))
    return image_to_token_attention_reference(q_in, q_add, u, cb, r, out_bias, residual, ln_w, ln_b, eps,
                                              num_heads)


# --------------------------------------------------------------------------------------------
# token->image attention with folded projections: token rows attend to the image tokens
# --------------------------------------------------------------------------------------------


def token_to_image_attention_reference(u: Tensor, x: Tensor, k_add: Optional[Tensor] = None) -> Tensor:
    """softmax_n(u @ (x + k_add)^T) @ x.

    u: [B, Q, C] folded, pre-scaled queries (Q = heads * tokens), x: [Bx, N, C] image tokens (Bx = 1 or B;
    the values, and with k_add [N, C] the keys). Returns [B, Q, C]."""
    k = x if k_add is None else x + k_add
    p = torch.softmax(torch.matmul(u, k.transpose(-1, -2)), dim=-1)  # [B, Q, N]
    return torch.matmul(p, x)


def _check_t2i_args(u, x, k_add) -> None:
    _check(isinstance(u, Tensor) and u.dim() == 3, ValueError, f"u: expected [B, Q, C], got {_shape(u)}")
    B, _, C = u.shape
    _check(isinstance(x, Tensor) and x.dim() == 3 and x.shape[0] in (1, B) and x.shape[2] == C and x.shape[1] > 0,
           ValueError, f"x: expected [1 or {B}, N > 0, {C}], got {_shape(x)}")
    N = x.shape[1]
    if k_add is not None:
        _check(isinstance(k_add, Tensor) and tuple(k_add.shape) == (N, C), ValueError,
               f"k_add: expected [{N}, {C}], got {_shape(k_add)}")
    _check(u.is_floating_point(), TypeError, f"u: expected a float tensor, got {u.dtype}")
    for name, t in (("x", x), ("k_add", k_add)):
        if t is None:
            continue
        _check(t.dtype == u.dtype, TypeError, f"{name}: dtype {t.dtype} differs from u's {u.dtype}")
        _check(t.device == u.device, ValueError, f"{name}: on {t.device}, u on {u.device}")


@torch.library.custom_op("samfast::token_to_image_attention", mutates_args=())
def _token_to_image_op(u: Tensor, x: Tensor, k_add: Optional[Tensor]) -> Tensor:
    out = torch.empty_like(u)
    ka = k_add if k_add is not None else u.new_empty(0)
    _C.token_to_image_attention_cpu(tensor_ref(u), tensor_ref(x), tensor_ref(ka), tensor_ref(out))
    return out


@_token_to_image_op.register_fake
def _(u, x, k_add):
    return torch.empty_like(u)


def token_to_image_attention(u: Tensor, x: Tensor, k_add: Optional[Tensor] = None) -> Tensor:
    """Fused token->image attention (folded projections); see `token_to_image_attention_reference`."""
    _check_t2i_args(u, x, k_add)
    if u.dtype == torch.float32 and not u.is_cuda and use_kernel("token_to_image_attention", u, float_op=True):
        return _token_to_image_op(u.contiguous(), x.contiguous(), k_add.contiguous() if k_add is not None else None)
    return token_to_image_attention_reference(u, x, k_add)
