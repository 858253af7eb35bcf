"""Tensor joining, splitting and reduction as modules, so quantizers can see them.

``Concat`` needs a common output scale for all its inputs, so a quantizer must see it as a layer;
the others are grid-preserving or reductions whose outputs deserve their own statistics.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _as_tensors(inputs: tuple[Any, ...]) -> list[torch.Tensor]:
    """The tensors of a call given either as separate arguments or as one list/tuple."""
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        return list(inputs[0])
    return list(inputs)


class Concat(nn.Module):
    """``torch.cat(inputs, dim)``; accepts the tensors as separate arguments or one list/tuple."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(_as_tensors(inputs), dim=self.dim)


class Stack(nn.Module):
    """``torch.stack(inputs, dim)``; accepts separate tensors or one list/tuple."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(_as_tensors(inputs), dim=self.dim)


class Split(nn.Module):
    """``torch.split(x, split_size_or_sections, dim)``."""

    def __init__(self, split_size_or_sections: int | list[int], dim: int = 0) -> None:
        super().__init__()
        self.split_size_or_sections = split_size_or_sections
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.split_size_or_sections, dim=self.dim)


class Chunk(nn.Module):
    """``torch.chunk(x, chunks, dim)``."""

    def __init__(self, chunks: int, dim: int = 0) -> None:
        super().__init__()
        self.chunks = chunks
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.chunk(x, self.chunks, dim=self.dim)


class Mean(nn.Module):
    """``torch.mean(x, dim, keepdim)`` over one or several dimensions."""

    def __init__(self, dim: int | Sequence[int], keepdim: bool = False) -> None:
        super().__init__()
        self.dim = dim if isinstance(dim, int) else tuple(dim)
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(x, dim=self.dim, keepdim=self.keepdim)


class View(nn.Module):
    """``x.view(*shape)``; ``-1`` infers one dimension, ``keep_batch`` keeps dimension 0 as is."""

    def __init__(self, *shape: int, keep_batch: bool = False) -> None:
        super().__init__()
        self.shape = shape
        self.keep_batch = keep_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep_batch:
            return x.reshape(x.size(0), *self.shape)
        return x.reshape(*self.shape)
