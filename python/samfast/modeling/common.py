"""Small building blocks shared by the encoder and decoder (official parameter names)."""
from typing import Type

import torch
from torch import nn

from .. import ops
from . import packed_linear


class MLPBlock(nn.Module):
    """lin1 -> act -> lin2 (transformer feed-forward)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.act) is nn.GELU and self.act.approximate == "none":  # activation fused into lin1
            return packed_linear.linear(self.lin2, packed_linear.linear(self.lin1, x, act="gelu"))
        if type(self.act) is nn.ReLU:
            return packed_linear.linear(self.lin2, packed_linear.linear(self.lin1, x, act="relu"))
        return packed_linear.linear(self.lin2, self.act(packed_linear.linear(self.lin1, x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a BxCxHxW tensor (eps 1e-6, biased variance)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.layer_norm_2d(x, self.weight, self.bias, self.eps)
