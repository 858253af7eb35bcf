"""Tensor joining, splitting and reduction as modules, so quantizers can see them.

``Concat`` needs a common output scale for all its inputs, so a quantizer must see it as a layer;
the others are grid-preserving or reductions whose outputs deserve their own statistics.
"""
import torch
from torch import nn


def _as_tensors(inputs):
    """The tensors of a call given either as separate arguments or as one list/tuple."""
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        return tuple(inputs[0])
    return inputs


class Concat(nn.Module):
    """``torch.cat(inputs, dim)``; accepts the tensors as separate arguments or one list/tuple."""

    def __init__(self, dim=0):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs):
        inputs = _as_tensors(inputs)
        return torch.cat(inputs, dim=self.dim)


class Stack(nn.Module):
    """``torch.stack(inputs, dim)``; accepts separate tensors or one list/tuple."""

    def __init__(self, dim=0):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs):
        inputs = _as_tensors(inputs)
        return torch.stack(inputs, dim=self.dim)


class Split(nn.Module):
    """``torch.split(x, split_size_or_sections, dim)``."""

    def __init__(self, split_size_or_sections, dim=0):
        super().__init__()
        self.split_size_or_sections = split_size_or_sections
        self.dim = dim

    def forward(self, x):
        return torch.split(x, self.split_size_or_sections, dim=self.dim)


class Chunk(nn.Module):
    """``torch.chunk(x, chunks, dim)``."""

    def __init__(self, chunks, dim=0):
        super().__init__()
        self.chunks = chunks
        self.dim = dim

    def forward(self, x):
        return torch.chunk(x, self.chunks, dim=self.dim)


class Mean(nn.Module):
    """``torch.mean(x, dim, keepdim)`` over one or several dimensions."""

    def __init__(self, dim, keepdim=False):
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (list, tuple)) else dim
        self.keepdim = keepdim

    def forward(self, x):
        return torch.mean(x, dim=self.dim, keepdim=self.keepdim)


class View(nn.Module):
    """``x.view(*shape)``; ``-1`` infers one dimension, ``keep_batch`` keeps dimension 0 as is."""

    def __init__(self, *shape, keep_batch=False):
        super().__init__()
        self.shape = shape
        self.keep_batch = keep_batch

    def forward(self, x):
        if self.keep_batch:
            return x.reshape(x.size(0), *self.shape)
        return x.reshape(*self.shape)
