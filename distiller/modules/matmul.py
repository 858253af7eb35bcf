"""Matrix products as modules (attention scores, bilinear layers), so they can be quantized."""
from __future__ import annotations

import torch
from torch import nn


class Matmul(nn.Module):
    """``torch.matmul(a, b)``: any ranks, with broadcasting."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class BatchMatmul(nn.Module):
    """``torch.bmm(a, b)`` on 3-D tensors ``(batch, n, m) @ (batch, m, p)``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)
