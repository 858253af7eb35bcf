"""Matrix products as modules (attention scores, bilinear layers), so they can be quantized."""
import torch
from torch import nn


class Matmul(nn.Module):
    """``torch.matmul(a, b)``: any ranks, with broadcasting."""

    def forward(self, a, b):
        return torch.matmul(a, b)


class BatchMatmul(nn.Module):
    """``torch.bmm(a, b)`` on 3-D tensors ``(batch, n, m) @ (batch, m, p)``."""

    def forward(self, a, b):
        return torch.bmm(a, b)
