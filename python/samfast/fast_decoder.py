"""Fast mask-decoder path: per-image caching + projection folding, same math as `MaskDecoder`.

What is cached per image (`FastMaskDecoder.prepare`), valid for every prompt without a mask input:
  X0 = image_embedding + no_mask_embed  [N, C]  (N = h*w image tokens), P = dense PE [N, C],
  and layer 0's image-side projections, which see only image-side inputs:
  k_proj(X0 + P), v_proj(X0) of token->image attention and q_proj(X0 + P) of image->token attention.

For the later attentions, whose image side changes per prompt, the projections are folded into
the token side (tokens T << channels C):
  token->image: softmax_n(q_h . (Wk_h K_n + bk_h)) = softmax_n((Wk_h^T q_h) . K_n)  (q.bk cancels),
                sum_n p_n (Wv_h X_n + bv_h) = Wv_h (sum_n p_n X_n) + bv_h            (rows of p sum to 1)
  image->token: (Wq_h K_n + bq_h) . k_t = K_n . (Wq_h^T k_t) + bq_h . k_t,
                out_proj(sum_t p_t v_t) = sum_h sum_t p_ht (Wo_h v_ht) + bo
so each image-side product is [N, C] x [C, heads*T] instead of [N, C] x [C, C/2].
Kernels: `ops.token_to_image_attention` (keys x + pe formed per tile, online softmax: no [B, H*T, N]
scores, no x + pe tensor), `ops.image_to_token_attention` (+ residual + LayerNorm, q = x + pe per
tile), and `ops.mask_head` (upscaling + hypernetwork dot). The final token->image attention runs only
for the tokens read afterwards (IoU token + the requested mask tokens).

On the CPU in float32, all of this runs in one C++ call (`ops.cached_mask_decoder`: same math, no Python
between the ~200 small token-side ops; a mask prompt passes image embedding + dense embedding, and layer
0 then runs without the cache); `whole_decoder_kernel = False` keeps the op-by-op path below. There, for
mask-free prompts with few tokens, two more per-image products (`ops.fold_image`, `DecoderCache.g`) remove image-
sized work: the mask head's first ConvT is formed from x0 @ A'' and the image->token updates, and layer 1's
token->image attention reads layer 0's LayerNorm'd output through centred image-only projections (Kc, Kpe, Vc)
plus rank-(heads*T) per-prompt terms (csrc/cpu/token_to_image_ln_kernel.h) instead of reading its [N, C] rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .modeling import Sam
from .modeling.prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from .modeling.transformer import Attention
from .utils.transforms import ResizeLongestSide


@dataclass
class DecoderCache:
    """Per-image, prompt-independent decoder state (see module docstring). Shapes for N = h*w."""

    x0: Tensor  # [1, N, C] image_embedding + no_mask_embed
    pe: Tensor  # [1, N, C] dense positional encoding
    k0: Tensor  # [H, Ci/H, N] layer-0 token->image k_proj(x0 + pe), per head, transposed
    v0: Tensor  # [H, N, Ci/H] layer-0 token->image v_proj(x0), per head
    q0: Tensor  # [N, Ci] layer-0 image->token q_proj(x0 + pe)
    hw: Tuple[int, int]
    features: Tensor  # the embedding this cache was built from [1, C, h, w]
    packed: Optional[Tensor] = None  # decoder parameters for ops.cached_mask_decoder (None: op-by-op path)
    g: Optional[Tensor] = None  # ops.fold_image(x0, pe, packed): per-image products for mask-free prompts; tied to
    # this x0, pe and packed (made together in prepare())
    prompt_predictor: Optional[tuple] = None  # (key, _C.PromptPredictor), see FastMaskDecoder.prompt_predictor


def _t2i(attn: Attention, q_tok: Tensor, x: Tensor, pe: Tensor,
         cached: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """Token->image attention. q_tok [B, T, C]; image tokens x [B|1, N, C] (values; keys x + pe) -> [B, T, C].
    cached: layer 0's per-head projections (k [H, dh, N], v [H, N, dh]) of the image side."""
    B, T, C = q_tok.shape
    H, di = attn.num_heads, attn.internal_dim
    dh = di // H
    qh = F.linear(q_tok, attn.q_proj.weight, attn.q_proj.bias).view(B, T, H, dh)
    if cached is not None:  # every prompt's queries of one head in one matmul: [H, B*T, dh] @ [H, dh, N]
        kt, vh = cached
        q2 = qh.permute(2, 0, 1, 3).reshape(H, B * T, dh) * (1.0 / math.sqrt(dh))  # scale the small side
        p = torch.softmax(torch.bmm(q2, kt), dim=-1)  # [H, B*T, N]
        out = torch.bmm(p, vh).view(H, B, T, dh).permute(1, 2, 0, 3).reshape(B, T, di)
    else:
        wk = attn.k_proj.weight.view(H, dh, C)
        u = torch.einsum("bthd,hdc->bhtc", qh, wk).reshape(B, H * T, C) * (1.0 / math.sqrt(dh))
        z = ops.token_to_image_attention(u, x, pe[0]).view(B, H, T, C)  # softmax_n(u . (x_n + pe_n)) x_n
        wv = attn.v_proj.weight.view(H, dh, C)
        out = torch.einsum("bhtc,hdc->bthd", z, wv).reshape(B, T, di) + attn.v_proj.bias
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def _i2t(attn: Attention, norm: torch.nn.LayerNorm, x: Tensor, pe: Tensor, k_tok: Tensor,
         v_tok: Tensor, cached_q: Optional[Tensor] = None) -> Tensor:
    """Image->token attention + residual + LayerNorm: norm(x + attn(x + pe, k_tok, v_tok)), fused in
    `ops.image_to_token_attention` (x + pe formed per tile). x [B|1, N, C]; pe [1, N, C]; cached_q [N, di]
    (layer 0: q_proj(x + pe) precomputed); k_tok, v_tok [B, T, C] -> [B, N, C]."""
    B, T, C = k_tok.shape
    H, di = attn.num_heads, attn.internal_dim
    dh = di // H
    scale = 1.0 / math.sqrt(dh)
    kh = F.linear(k_tok, attn.k_proj.weight, attn.k_proj.bias).view(B, T, H, dh)
    vh = F.linear(v_tok, attn.v_proj.weight, attn.v_proj.bias).view(B, T, H, dh)
    if cached_q is not None:  # [N, di]: q_proj already applied; u block-diagonal over heads [B, di, T*H]
        eye = torch.eye(H, dtype=kh.dtype, device=kh.device)
        u = torch.einsum("bthd,hg->bhdtg", kh, eye).reshape(B, di, T * H) * scale
        cb = kh.new_zeros(B, H * T)
        q_in, q_add = cached_q.unsqueeze(0), None
    else:
        wq = attn.q_proj.weight.view(H, dh, C)
        u = torch.einsum("bthd,hdc->bcth", kh, wq).reshape(B, C, T * H) * scale
        cb = torch.einsum("hd,bthd->bth", attn.q_proj.bias.view(H, dh), kh).reshape(B, T * H) * scale
        q_in, q_add = x, pe[0]
    wo = attn.out_proj.weight.view(C, H, dh)
    r = torch.einsum("bthd,chd->bthc", vh, wo).reshape(B, T * H, C)
    return ops.image_to_token_attention(q_in, q_add, u, cb, r, attn.out_proj.bias, x, norm.weight, norm.bias,
                                        norm.eps, H)


class FastMaskDecoder:
    """Drop-in for `sam.mask_decoder(...)` given a per-image `DecoderCache`."""

    def __init__(self, sam: Sam, whole_decoder_kernel: bool = True) -> None:
        self.sam = sam
        self.dec = sam.mask_decoder
        self.tr = sam.mask_decoder.transformer
        self.whole_decoder_kernel = whole_decoder_kernel
        self._dims = ops.decoder_dims(self.dec)  # None: structure the C++ decoder does not implement
        self._packed: Optional[Tensor] = None
        self._packed_key = None

    def _packed_params(self) -> Optional[Tensor]:
        """The decoder's parameters packed for `ops.cached_mask_decoder`; repacked when any of them changed
        (storage or in-place version)."""
        key = tuple((p.data_ptr(), p._version) for p in self.dec.parameters())
        if key != self._packed_key:
            self._packed, self._packed_key = ops.pack_decoder(self.dec, self._dims), key
        return self._packed

    def _whole_kernel_ok(self, cache: DecoderCache) -> bool:
        x = cache.x0
        return (self.whole_decoder_kernel and self._dims is not None and x.dtype == torch.float32
                and not x.is_cuda and (cache.hw[0] * cache.hw[1]) % 8 == 0 and ops.use_kernel("cached_decoder", x))

    @torch.no_grad()
    def prepare(self, features: Tensor) -> DecoderCache:
        """features: 1xCxhxw image embedding -> cache for all mask-free prompts on this image."""
        dec, tr, pe_mod = self.dec, self.tr, self.sam.prompt_encoder
        dt = dec.iou_token.weight.dtype
        _, C, h, w = features.shape
        pe = pe_mod.get_dense_pe().to(dt).flatten(2).transpose(1, 2)  # [1, N, C]
        x0 = (features.to(dt) + pe_mod.no_mask_embed.weight.to(dt).view(1, C, 1, 1)).flatten(2).transpose(1, 2)
        layer0 = tr.layers[0]
        kin = (x0 + pe)[0]
        a, b = layer0.cross_attn_token_to_image, layer0.cross_attn_image_to_token
        H, N = a.num_heads, h * w
        k0 = F.linear(kin, a.k_proj.weight, a.k_proj.bias).view(N, H, -1).permute(1, 2, 0).contiguous()
        v0 = F.linear(x0[0], a.v_proj.weight, a.v_proj.bias).view(N, H, -1).permute(1, 0, 2).contiguous()
        q0 = F.linear(kin, b.q_proj.weight, b.q_proj.bias)
        cache = DecoderCache(x0.contiguous(), pe.contiguous(), k0, v0, q0, (h, w), features)
        if self._whole_kernel_ok(cache):  # parameter changes are picked up once per image
            cache.packed = self._packed_params()
            cache.g = ops.fold_image(cache.x0, cache.pe, cache.packed, self._dims)
        return cache

    def _prompt_tokens_ok(self) -> bool:
        """Whether `ops.prompt_tokens` may stand in for the prompt encoder + token assembly: CPU float32 weights, no
        gradients, and `_prompt_modules_ok`."""
        w = self.dec.iou_token.weight
        if w.dtype != torch.float32 or w.device.type != "cpu" or torch.is_grad_enabled():
            return False
        return self._prompt_modules_ok()

    def _prompt_modules_ok(self) -> bool:
        """A prompt encoder and positional encoding this mirrors (not subclassed, no patched forward /
        forward_with_coords / _pe_encoding), and no hooks that the official call would run: the prompt encoder's own
        and global ones (for points and boxes it reads its submodules' weights and calls pe_layer's methods directly,
        so theirs never run)."""
        pe_mod = self.sam.prompt_encoder
        pe_layer = pe_mod.pe_layer
        if type(pe_mod) is not PromptEncoder or type(pe_layer) is not PositionEmbeddingRandom or \
                "forward" in vars(pe_mod) or any(k in vars(pe_layer) for k in ("forward_with_coords", "_pe_encoding")):
            return False
        mm = torch.nn.modules.module
        if getattr(mm, "_global_forward_hooks", None) or getattr(mm, "_global_forward_pre_hooks", None):
            return False
        return not (pe_mod._forward_hooks or pe_mod._forward_pre_hooks)

    def _prompt_weights(self) -> list:
        """The embedding weights `ops.prompt_tokens` reads, as the modules hold them now."""
        pe_mod, dec = self.sam.prompt_encoder, self.dec
        return [pe_mod.pe_layer.positional_encoding_gaussian_matrix, [e.weight for e in pe_mod.point_embeddings],
                pe_mod.not_a_point_embed.weight, dec.iou_token.weight, dec.mask_tokens.weight]

    def _prompt_weight_list(self) -> list:
        """`_prompt_weights` flat: gauss, the 4 point embeddings, not_a_point, iou_token, mask_tokens."""
        gauss, point_emb, not_a_point, iou_token, mask_tokens = self._prompt_weights()
        return [gauss, *point_emb, not_a_point, iou_token, mask_tokens]

    def prompt_tokens(self, points: Optional[Tuple[Tensor, Tensor]], boxes: Optional[Tensor]) -> Optional[Tensor]:
        """The decoder's tokens [B, T, C] for mask-free prompts straight from points (coords BxNx2, labels BxN) and
        boxes (Bx4), as `dec.assemble_tokens(prompt_encoder(points, boxes, None)[0])` (`ops.prompt_tokens`: one
        C++ call on the CPU, reading the modules' weights as they are). None where the modules must run (see
        `_prompt_tokens_ok`)."""
        if (points is None and boxes is None) or not self._prompt_tokens_ok():
            return None
        coords, labels = points if points is not None else (None, None)
        return ops.prompt_tokens(coords, labels, boxes, *self._prompt_weights(), boxes is None,
                                 self.sam.prompt_encoder.input_image_size)

    def prompt_predictor(self, cache: DecoderCache, img_size: int, input_size: Tuple[int, int],
                         original_size: Tuple[int, int], target_length: int):
        """`SamPredictor.predict`'s mask-free CPU path for this image: a `_C.PromptPredictor` whose
        `predict(point_coords, point_labels, box, multimask, threshold, binarize)` runs prompt tokens, the whole
        decoder and post-processing in one C++ call (the kernel functions behind `prompt_tokens` + `decode_tokens` +
        `ops.postprocess_masks`) on numpy prompts in the original frame, and returns numpy arrays. Without the
        Python steps in between, ~0.25 ms less per prompt with the caches cold after each decoder call. Made per
        image, size and prompt-weight storage (a weight replaced through `.data`, `.double()`, `load_state_dict(...,
        assign=True)`, ... makes a new one; in-place edits are read as they are); the modules' kind and hooks are
        checked on every call. It keeps the tensors it reads alive itself. None where it does not apply."""
        weights = self._prompt_weight_list()
        key = (img_size, tuple(input_size), tuple(original_size), target_length, *map(Tensor.data_ptr, weights))
        made = cache.prompt_predictor
        if made is not None and made[0] == key:
            return made[1] if self.whole_decoder_kernel and self._prompt_modules_ok() else None
        if cache.packed is None or cache.g is None or not self._whole_kernel_ok(cache) or \
                not self._prompt_modules_ok() or any(w.dtype != torch.float32 or w.device.type != "cpu" for w in weights):
            return None  # (no autograd check: numpy in, numpy out)
        old_h, old_w = original_size
        new_h, new_w = ResizeLongestSide.get_preprocess_shape(old_h, old_w, target_length)
        img_h, img_w = self.sam.prompt_encoder.input_image_size
        tensors = (cache.x0, cache.pe, cache.k0, cache.v0, cache.q0, cache.packed, cache.g)
        ref = ops.tensor_ref
        pp = ops._C.PromptPredictor(
            [ref(t) for t in weights], [ref(t) for t in tensors], self._dims, *cache.hw,
            self.tr.norm_final_attn.eps, self.dec.output_upscaling[1].eps, float(img_h), float(img_w), img_size,
            input_size[0], input_size[1], old_h, old_w, new_w / old_w, new_h / old_h, (*weights, *tensors))
        cache.prompt_predictor = (key, pp)
        return pp

    @torch.no_grad()
    def __call__(self, cache: DecoderCache, sparse: Tensor, dense: Optional[Tensor],
                 multimask_output: bool) -> Tuple[Tensor, Tensor]:
        """sparse [B, Nt, C]; dense [B, C, h, w] or None (no mask prompt) -> (low_res [B, K, 4h, 4w], iou [B, K])."""
        tokens = self.dec.assemble_tokens(sparse.to(self.dec.iou_token.weight.dtype))  # [B, T, C]
        return self.decode_tokens(cache, tokens, dense, multimask_output)

    @torch.no_grad()
    def decode_tokens(self, cache: DecoderCache, tokens: Tensor, dense: Optional[Tensor],
                      multimask_output: bool) -> Tuple[Tensor, Tensor]:
        """tokens [B, T, C] (`dec.assemble_tokens` of the sparse embeddings, or `prompt_tokens`); dense as in
        `__call__`."""
        dec, tr = self.dec, self.tr
        dt = dec.iou_token.weight.dtype
        B = tokens.shape[0]
        if cache.packed is not None and self._whole_kernel_ok(cache):
            return ops.cached_mask_decoder(tokens, cache.x0, cache.pe, cache.k0, cache.v0, cache.q0, cache.packed,
                                           self._dims, cache.hw, multimask_output, self.tr.norm_final_attn.eps,
                                           dec.output_upscaling[1].eps,
                                           features=None if dense is None else cache.features.to(dt),
                                           dense=None if dense is None else dense.to(dt), g=cache.g)
        pe = cache.pe
        if dense is None:
            x = cache.x0  # [1, N, C], shared by the batch
            cached = True
        else:
            x = cache.features.to(dt).flatten(2).transpose(1, 2) + dense.to(dt).flatten(2).transpose(1, 2)
            cached = False
        queries = tokens
        for i, layer in enumerate(tr.layers):
            # self-attention on tokens
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + tokens
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            use_cache = cached and i == 0
            att = layer.cross_attn_token_to_image
            queries = layer.norm2(queries + _t2i(att, queries + tokens, x, pe,
                                                 (cache.k0, cache.v0) if use_cache else None))
            queries = layer.norm3(queries + layer.mlp(queries))
            x = _i2t(layer.cross_attn_image_to_token, layer.norm4, x, pe, queries + tokens, queries,
                     cache.q0 if use_cache else None)
        # The final attention only matters for the tokens read afterwards: the IoU token and the mask
        # tokens of the requested output (attention rows and the LayerNorm are per token).
        sl = slice(1, None) if multimask_output else slice(0, 1)
        used = [0] + list(range(1, 1 + dec.num_mask_tokens))[sl]
        q_used, t_used = queries[:, used], tokens[:, used]
        att = tr.final_attn_token_to_image
        q_used = tr.norm_final_attn(q_used + _t2i(att, q_used + t_used, x, pe))
        iou_pred = dec.iou_prediction_head(q_used[:, 0, :])
        mlps = list(dec.output_hypernetworks_mlps)[sl]
        mask_tokens = q_used[:, 1:, :]
        hyper_in = torch.stack([mlp(mask_tokens[:, j, :]) for j, mlp in enumerate(mlps)], dim=1)
        up = dec.output_upscaling
        h, w = cache.hw
        masks = ops.mask_head(x.reshape(B, h, w, -1), up[0].weight, up[0].bias, up[1].weight, up[1].bias,
                              up[3].weight, up[3].bias, hyper_in)
        return masks, iou_pred[:, sl]
