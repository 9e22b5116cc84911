"""Prompt encoder: points, boxes (random-Fourier positional encoding) and masks (conv downscaling)."""
import math
from typing import Optional, Tuple, Type

import torch
from torch import nn

from .. import ops
from .common import LayerNorm2d


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # pos point, neg point, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """1x(embed_dim)x(h)x(w) positional encoding of the image embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """points BxNx2 (x, y in input-frame pixels), labels BxN -> BxN(+1)xC."""
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, -labels.new_ones((labels.shape[0], 1))], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        not_point = (labels == -1)[..., None]
        emb = torch.where(not_point, self.not_a_point_embed.weight.expand_as(emb), emb)
        emb = emb + (labels == 0)[..., None] * self.point_embeddings[0].weight
        emb = emb + (labels == 1)[..., None] * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes Bx4 (XYXY) -> Bx2xC."""
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        corners = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return emb + corners

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks Bx1x(4h)x(4w) logits -> BxCxhxw. Inference on the kernels backend runs the fused
        `ops.mask_embed` (one pass instead of seven small ops); training keeps the modules (autograd)."""
        fits = masks.dim() == 4 and masks.shape[-2] % 4 == 0 and masks.shape[-1] % 4 == 0  # else the convs crop
        if fits and not torch.is_grad_enabled() and ops.get_backend() == "kernels":
            found = ops.mask_downscaling_params(self.mask_downscaling)
            if found is not None:
                params, eps1, eps2 = found
                return ops.mask_embed(masks, params, eps1, eps2)
        return self.mask_downscaling(masks)

    @staticmethod
    def _get_batch_size(points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return self.point_embeddings[0].weight.device

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> sparse BxNxC, dense BxCx(h)x(w)."""
        bs = self._get_batch_size(points, boxes, masks)
        w = self.point_embeddings[0].weight
        parts = []
        if points is not None:
            coords, labels = points
            parts.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        if parts:
            sparse = torch.cat(parts, dim=1).to(w.dtype)
        else:
            sparse = torch.empty((bs, 0, self.embed_dim), device=w.device, dtype=w.dtype)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, ww = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, ww)
        return sparse, dense


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al.)."""

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords ...x2 normalised to [0, 1] -> ...x(2*num_pos_feats) (sin | cos)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Dense PE for an (h, w) grid -> Cxhxw."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Un-normalised BxNx2 pixel coords (x, y) -> BxNxC."""
        coords = torch.stack(
            [coords_input[..., 0] / image_size[1], coords_input[..., 1] / image_size[0]], dim=-1)
        return self._pe_encoding(coords.to(torch.float))
