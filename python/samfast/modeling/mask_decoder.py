"""SAM mask decoder: two-way transformer + upscaling + hypernetwork MLPs + IoU head."""
from typing import Tuple, Type

import torch
from torch import nn
from torch.nn import functional as F

from .. import ops
from .common import LayerNorm2d


class MaskDecoder(nn.Module):
    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings 1xCxhxw (or BxCxhxw), sparse BxNxC, dense BxCxhxw ->
        (masks BxKx4hx4w, iou BxK), K = 3 if multimask_output else 1."""
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def assemble_tokens(self, sparse_prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """BxNxC sparse prompt embeddings -> Bx(1+M+N)xC tokens: IoU token, M mask tokens, the prompts."""
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        return torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        tokens = self.assemble_tokens(sparse_prompt_embeddings)
        return self.decode_tokens(tokens, image_embeddings, image_pe, dense_prompt_embeddings)

    def decode_tokens(self, tokens, image_embeddings, image_pe, dense_prompt_embeddings):
        """The decoder on assembled tokens BxTxC (IoU token, mask tokens, sparse prompts): image_embeddings
        1xCxhxw or BxCxhxw, image_pe 1xCxhxw, dense BxCxhxw -> (masks BxMx4hx4w, iou BxM), all M mask tokens."""
        if image_embeddings.shape[0] == tokens.shape[0]:
            src = image_embeddings
        else:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        src = src + dense_prompt_embeddings
        pos_src = image_pe.expand(tokens.shape[0], -1, -1, -1)
        b, c, h, w = src.shape
        hs, keys = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        up = self.output_upscaling
        masks = ops.mask_head(keys.reshape(b, h, w, c), up[0].weight, up[0].bias, up[1].weight, up[1].bias,
                              up[3].weight, up[3].bias, hyper_in)
        return masks, self.iou_prediction_head(iou_token_out)


class MLP(nn.Module):
    """Linear layers with ReLU between them (hypernetwork and IoU head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 sigmoid_output: bool = False) -> None:
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
