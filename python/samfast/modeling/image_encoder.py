"""ViT image encoder of SAM (windowed + global blocks, decomposed rel-pos bias, conv neck).

Parameter names match segment_anything's `ImageEncoderViT`. Attention runs through
`samfast.ops.rel_pos_attention`: windowed blocks read q/k/v straight from the un-padded qkv
projection (padded tokens are represented by the qkv bias, exactly what the official code's
zero-padded tokens become after the linear), so no partition/pad copies are made.
"""
from typing import Dict, Optional, Tuple, Type

import torch
from torch import nn

from .. import ops
from . import packed_linear
from .common import LayerNorm2d, MLPBlock


class ImageEncoderViT(nn.Module):
    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: Type[nn.Module] = nn.LayerNorm,
        act_layer: Type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        global_attn_indexes: Tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed((patch_size, patch_size), (patch_size, patch_size), (0, 0), in_chans, embed_dim)
        grid = img_size // patch_size
        self.pos_embed: Optional[nn.Parameter] = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                window_size=window_size if i not in global_attn_indexes else 0,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: Bx3xSxS normalised, padded image -> Bx256x(S/16)x(S/16) embedding."""
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


class Block(nn.Module):
    """Pre-norm transformer block; window_size 0 = global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: Type[nn.Module] = nn.LayerNorm,
        act_layer: Type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: BxHxWxC -> BxHxWxC."""
        x = x + self.attn(self.norm1(x), self.window_size)
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head attention with decomposed relative-position bias (MViTv2)."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: Optional[Tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size must be provided when use_rel_pos=True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
        self._rel_cache: Dict[tuple, Tuple[torch.Tensor, torch.Tensor]] = {}

    def _gathered_rel_pos(self, sh: int, sw: int, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """rel_h [sh, sh, hd], rel_w [sw, sw, hd]; cached in inference (no grad) mode."""
        hd = self.qkv.out_features // 3 // self.num_heads
        if not self.use_rel_pos:
            z = like.new_zeros((max(sh, sw), max(sh, sw), hd))
            return z[:sh, :sh].contiguous(), z[:sw, :sw].contiguous()
        cacheable = (not torch.is_grad_enabled() or not self.rel_pos_h.requires_grad) and \
            not torch.compiler.is_compiling()
        key = (sh, sw, like.dtype, like.device, self.rel_pos_h._version, self.rel_pos_w._version,
               self.rel_pos_h.data_ptr(), self.rel_pos_w.data_ptr())
        if cacheable and key in self._rel_cache:
            return self._rel_cache[key]
        rh = ops.get_rel_pos(sh, sh, self.rel_pos_h).to(like.dtype).contiguous()
        rw = ops.get_rel_pos(sw, sw, self.rel_pos_w).to(like.dtype).contiguous()
        if cacheable:
            self._rel_cache = {key: (rh, rw)}
        return rh, rw

    def forward(self, x: torch.Tensor, window_size: int = 0) -> torch.Tensor:
        """x: BxHxWxC (already normed) -> BxHxWxC."""
        B, H, W, C = x.shape
        qkv = packed_linear.linear(self.qkv, x)  # [B, H, W, 3C]
        if self.qkv.bias is not None:
            bias = self.qkv.bias.to(qkv.dtype)
        else:
            bias = qkv.new_zeros(3 * C)
        sh, sw = (window_size, window_size) if window_size > 0 else (H, W)
        rel_h, rel_w = self._gathered_rel_pos(sh, sw, qkv)
        out = ops.rel_pos_attention(qkv, bias, rel_h, rel_w, self.num_heads, window_size)
        return packed_linear.linear(self.proj, out)


class PatchEmbed(nn.Module):
    """Conv patchify: Bx3xSxS -> Bx(S/p)x(S/p)xC."""

    def __init__(
        self,
        kernel_size: Tuple[int, int] = (16, 16),
        stride: Tuple[int, int] = (16, 16),
        padding: Tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)
