"""A tiny transformer encoder classifier for tests (it reads the same 3x8x8 batches as TinyCNN)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyTransformer"]


class TinyTransformer(nn.Module):
    """Pixels as tokens: a linear embedding of each pixel's channels, a learned position embedding, an
    ``nn.TransformerEncoder`` (post-norm, ReLU FFN), mean pooling and a linear classifier.

    Args:
        num_classes: output classes.
        dim: model width.
        heads: attention heads per layer.
        ffn: hidden width of the feed-forward blocks.
        layers: encoder layers.
        channels: input channels.
        tokens: the largest number of pixels (H x W) of an input.
    """

    def __init__(self, num_classes: int = 10, dim: int = 8, heads: int = 4, ffn: int = 16, layers: int = 2,
                 channels: int = 3, tokens: int = 64) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, dim)
        self.position = nn.Parameter(torch.randn(tokens, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.flatten(2).transpose(1, 2))
        tokens = tokens + self.position[: tokens.shape[1]]
        return self.fc(self.encoder(tokens).mean(dim=1))
