"""The whole mask decoder in one C++ call, on a cached image (CPU, float32), mask prompts included.

`samfast.fast_decoder.FastMaskDecoder` runs the decoder as ~200 small PyTorch ops around three fused
kernels; for one prompt the Python and dispatcher overhead of those ops, and MKL's handling of
7-row matmuls, cost about as much as the kernels. `cached_mask_decoder` runs the same math
(same cache, same folding; see fast_decoder's docstring) in `_C.cached_decoder_cpu`.

  pack_decoder(mask_decoder) -> packed   once per weight set: every parameter in one float32 buffer
                                          (linears also transposed), layout defined in C++
  cached_mask_decoder(tokens, cache tensors, packed, dims, ..., features=None, dense=None)
      -> (low_res [B, K, 4h, 4w], iou [B, K])
  (dense = the mask prompt's dense embedding [B, C, h, w], features = the image embedding [1, C, h, w]:
  then layer 0 runs on features + dense instead of the per-image cache)

The pure-PyTorch reference is the decoder module's own math on the same tokens
(`cached_mask_decoder_reference`, i.e. `MaskDecoder.decode_tokens`); tests compare the op with it, with
the op-by-op FastMaskDecoder, and with the official decoder in float32 and float64. Import from
`samfast.ops`.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from . import _C
from .ops import _check, _plain_eager, _shape, tensor_ref, use_kernel


def decoder_dims(dec: nn.Module) -> Optional[List[int]]:
    """[C, heads, Di, mlp_dim, mask_tokens, iou_hidden, C1, C2] of a SAM `MaskDecoder` whose structure the
    C++ path implements (2 two-way blocks with ReLU MLPs, 3-layer ReLU heads without sigmoid, GELU
    upscaling, one LayerNorm eps), else None."""
    from .modeling.common import LayerNorm2d

    try:
        tr, up = dec.transformer, dec.output_upscaling
        layers = list(tr.layers)
        if len(layers) != 2 or not layers[0].skip_first_layer_pe or layers[1].skip_first_layer_pe:
            return None
        C, H = tr.embedding_dim, layers[0].self_attn.num_heads
        Di = layers[0].cross_attn_token_to_image.internal_dim
        attns = [a for L in layers for a in (L.cross_attn_token_to_image, L.cross_attn_image_to_token)]
        attns.append(tr.final_attn_token_to_image)
        if any(a.num_heads != H or a.internal_dim != Di for a in attns):
            return None
        if any(L.self_attn.num_heads != H or L.self_attn.internal_dim != C for L in layers):
            return None
        if any(type(L.mlp.act) is not nn.ReLU for L in layers):
            return None
        norms = [n for L in layers for n in (L.norm1, L.norm2, L.norm3, L.norm4)] + [tr.norm_final_attn]
        if len({n.eps for n in norms}) != 1:
            return None
        heads = [dec.iou_prediction_head, *dec.output_hypernetworks_mlps]
        if any(m.num_layers != 3 or m.sigmoid_output for m in heads):
            return None
        if len(up) != 5 or not isinstance(up[1], LayerNorm2d) or \
                any(type(up[i]) is not nn.GELU or up[i].approximate != "none" for i in (2, 4)):
            return None
        dims = [C, H, Di, layers[0].mlp.lin1.out_features, dec.num_mask_tokens,
                dec.iou_prediction_head.layers[0].out_features, up[0].out_channels, up[3].out_channels]
        _C.cached_decoder_param_entries(dims)  # raises on dims the kernel does not support
        return dims
    except (AttributeError, TypeError, ValueError):
        return None


def pack_decoder(dec: nn.Module, dims: List[int]) -> Tensor:
    """All of `dec`'s parameters in the C++ layout for `dims` (float32, CPU)."""
    params = dict(dec.named_parameters())
    tensors = []
    for _, name, _, _ in _C.cached_decoder_param_entries(dims):
        for suffix in (".weight", ".bias"):
            tensors.append(params[name + suffix].detach().to("cpu", torch.float32).contiguous())
    packed = torch.empty(_C.cached_decoder_packed_numel(dims))
    _C.cached_decoder_pack_cpu([tensor_ref(t) for t in tensors], dims, tensor_ref(packed))
    return packed


def cached_mask_decoder_reference(
    mask_decoder: nn.Module, tokens: Tensor, image_embedding: Tensor, image_pe: Tensor, dense: Tensor,
    multimask: bool,
) -> Tuple[Tensor, Tensor]:
    """What `cached_mask_decoder` computes, in PyTorch: the decoder module on the same tokens.

    tokens [B, T, C] (IoU token, mask tokens, sparse prompts), image_embedding [1, C, h, w], image_pe
    [1, C, h, w], dense [B or 1, C, h, w] (the mask prompt's embedding, or the no-mask embedding broadcast:
    then image_embedding + dense is the op's x0). Returns (low_res [B, K, 4h, 4w], iou [B, K])."""
    from .ops import backend

    with backend("reference"), torch.no_grad():
        masks, iou = mask_decoder.decode_tokens(tokens, image_embedding, image_pe,
                                                dense.expand(tokens.shape[0], -1, -1, -1))
    sl = slice(1, None) if multimask else slice(0, 1)
    return masks[:, sl], iou[:, sl]


def fold_image(x0: Tensor, pe: Tensor, packed: Tensor, dims: List[int]) -> Tensor:
    """Per-image products for mask-free prompts (see `cached_decoder_fold_image` in csrc/cpu/cached_decoder_kernel.h):
    g [N, fold width] holds x0 [1, N, C] @ A'' (the mask head's folded first ConvT, `MaskHeadFold`) followed by layer
    1's token->image kv block (keys / values of layer 0's image->token output, centred and split into image and
    per-prompt parts). With it, `cached_mask_decoder` forms each prompt's first ConvT from two rank-(heads*T)
    updates, and layer 1's token->image attention without a pass over the [N, C] image rows."""
    x0, pe, packed = x0.contiguous(), pe.contiguous(), packed.contiguous()  # kept alive: the refs only borrow
    g = x0.new_empty((x0.shape[1], _C.cached_decoder_fold_width(list(dims))))
    _C.cached_decoder_fold_image_cpu(tensor_ref(x0), tensor_ref(pe), tensor_ref(packed), list(dims), tensor_ref(g))
    return g


def _cached_decoder_impl(
    tokens: Tensor, x0: Tensor, pe: Tensor, k0: Tensor, v0: Tensor, q0: Tensor, features: Optional[Tensor],
    dense: Optional[Tensor], packed: Tensor, dims: List[int], h: int, w: int, multimask: bool, eps: float, eps2d: float,
    g: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    B, K = tokens.shape[0], (dims[4] - 1) if multimask else 1
    masks = tokens.new_empty((B, K, 4 * h, 4 * w))
    iou = tokens.new_empty((B, K))
    empty = tokens.new_empty(0)
    opt = [t if t is not None else empty for t in (features, dense, g)]
    refs = [tensor_ref(t) for t in (tokens, x0, pe, k0, v0, q0, opt[0], opt[1], packed)]
    _C.cached_decoder_cpu(*refs, list(dims), h, w, multimask, eps, eps2d, tensor_ref(masks), tensor_ref(iou),
                          tensor_ref(opt[2]))
    return masks, iou


_cached_decoder_op = torch.library.custom_op("samfast::cached_mask_decoder", _cached_decoder_impl, mutates_args=())


@_cached_decoder_op.register_fake
def _(tokens, x0, pe, k0, v0, q0, features, dense, packed, dims, h, w, multimask, eps, eps2d, g=None):
    B, K = tokens.shape[0], (dims[4] - 1) if multimask else 1
    return tokens.new_empty((B, K, 4 * h, 4 * w)), tokens.new_empty((B, K))


def cached_mask_decoder(
    tokens: Tensor, x0: Tensor, pe: Tensor, k0: Tensor, v0: Tensor, q0: Tensor, packed: Tensor,
    dims: List[int], hw: Tuple[int, int], multimask: bool, eps: float = 1e-5, eps2d: float = 1e-6,
    features: Optional[Tensor] = None, dense: Optional[Tensor] = None, g: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Whole decoder. tokens [B, T, C] (IoU token, mask tokens, sparse prompt embeddings), cache tensors as
    in `fast_decoder.DecoderCache` (x0, pe [1, N, C], k0 [H, Di/H, N], v0 [H, N, Di/H], q0 [N, Di]),
    packed = pack_decoder(...); dense [B, C, h, w] = the mask prompts' dense embedding with features
    [1, C, h, w] = the image embedding, or None for mask-free prompts; g = fold_image(x0, pe, packed, dims) of this
    very x0, pe and packed (only its shape can be checked), or None: mask-free prompts with few tokens (SAM: T <= 8,
    a point or a box) then run the mask head's first ConvT folded and layer 1's token->image attention from g's kv
    block. Returns (low_res [B, K, 4h, 4w],
    iou [B, K]), K = mask_tokens - 1 with multimask, else 1. CPU float32 only (the C++ side checks every shape)."""
    _check(use_kernel("cached_decoder", tokens), RuntimeError,
           "cached_mask_decoder: needs the kernels backend and samfast._C built with cached_decoder_cpu")
    named = [("tokens", tokens), ("x0", x0), ("pe", pe), ("k0", k0), ("v0", v0), ("q0", q0), ("packed", packed)]
    _check((features is None) == (dense is None), ValueError, "features and dense must be given together")
    if dense is not None:
        named += [("features", features), ("dense", dense)]
    if g is not None:
        named.append(("g", g))
    for name, t in named:  # (messages formatted only on failure: this runs once per prompt)
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.dtype != torch.float32 or t.is_cuda:
            raise TypeError(f"{name}: expected a float32 CPU tensor, got {t.dtype} on {t.device} (shape {_shape(t)})")
    h, w = (int(v) for v in hw)
    run = _cached_decoder_impl if _plain_eager(tokens) else _cached_decoder_op
    return run(tokens.contiguous(), x0.contiguous(), pe.contiguous(), k0.contiguous(), v0.contiguous(), q0.contiguous(),
               features.contiguous() if features is not None else None,
               dense.contiguous() if dense is not None else None, packed.contiguous(),
               [int(d) for d in dims], h, w, bool(multimask), float(eps), float(eps2d),
               g.contiguous() if g is not None else None)
