"""Element-wise arithmetic as modules, so quantizers can find, wrap and calibrate them.

A functional ``out + identity`` is invisible to module-replacement quantizers; ``EltwiseAdd()(out,
identity)`` is a named module with its own input/output statistics.
"""
from __future__ import annotations

import torch
from torch import nn


class EltwiseAdd(nn.Module):
    """Sums any number of same-shape (or broadcastable) tensors.

    Args:
        inplace: accumulate into the first input (saves memory; the input is overwritten).
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        result = inputs[0]
        if self.inplace:
            for tensor in inputs[1:]:
                result += tensor
            return result
        for tensor in inputs[1:]:
            result = result + tensor
        return result


class EltwiseSub(nn.Module):
    """Subtracts the second input from the first."""

    def forward(self, minuend: torch.Tensor, subtrahend: torch.Tensor) -> torch.Tensor:
        return minuend - subtrahend


class EltwiseMult(nn.Module):
    """Multiplies any number of same-shape (or broadcastable) tensors.

    Args:
        inplace: accumulate into the first input (the input is overwritten).
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        result = inputs[0]
        if self.inplace:
            for tensor in inputs[1:]:
                result *= tensor
            return result
        for tensor in inputs[1:]:
            result = result * tensor
        return result


class EltwiseDiv(nn.Module):
    """Divides the first input by the second (a tensor or a number)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, dividend: torch.Tensor, divisor: torch.Tensor | float) -> torch.Tensor:
        if self.inplace:
            return dividend.div_(divisor)
        return torch.div(dividend, divisor)
