"""Element-wise mask criteria: pure functions from a tensor to a 0/1 mask of the same shape.

Every helper returns a new tensor with the input's shape, dtype and device (1 = keep, 0 = prune; a ``dtype``
argument where offered, e.g. ``torch.bool`` as masks are stored); none of
them modifies its input, copies it to the CPU or tracks gradients. :func:`mask_tensor` applies a mask.

Example:
    >>> w = torch.tensor([0.1, -0.5, 0.05, 2.0])
    >>> create_mask_threshold_criterion(w, 0.1)
    tensor([0., 1., 0., 1.])
    >>> create_mask_level_criterion(w, 0.5)          # exactly half of the elements pruned
    tensor([0., 1., 0., 1.])
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch

from ..errors import ArgumentError
from ..thresholding import threshold_mask

# Tolerance absorbed when turning ``sparsity * numel`` into an element count, so that float error in
# e.g. 0.29 * 100 = 28.999999999999996 does not lose an element.
_COUNT_EPSILON = 1e-6


def _check_float_tensor(tensor: Any, helper: str) -> None:
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise TypeError(f"{helper} needs a floating-point torch.Tensor, got "
                        f"{getattr(tensor, 'dtype', type(tensor).__name__)}")


def create_mask_threshold_criterion(tensor: torch.Tensor, threshold: Union[float, torch.Tensor]) -> torch.Tensor:
    """Keeps the elements whose magnitude is strictly above ``threshold``.

    Args:
        tensor: a floating-point tensor.
        threshold: a number or a 0-dim tensor.
    Returns:
        ``(|tensor| > threshold)`` as 0/1 in ``tensor``'s dtype and device.
    """
    _check_float_tensor(tensor, "create_mask_threshold_criterion")
    return threshold_mask(tensor, threshold)


def pruned_element_count(numel: int, desired_sparsity: float) -> int:
    """The number of elements that ``desired_sparsity`` of ``numel`` elements prunes (rounded down).

    Raises:
        ValueError: for a sparsity outside [0, 1].
    """
    if not 0.0 <= float(desired_sparsity) <= 1.0:
        raise ArgumentError(f"desired_sparsity={desired_sparsity} is outside [0, 1]")
    return min(numel, math.floor(desired_sparsity * numel + _COUNT_EPSILON))


def create_mask_level_criterion(tensor: torch.Tensor, desired_sparsity: float,
                                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Prunes exactly ``floor(desired_sparsity * numel)`` elements: those with the smallest magnitudes.

    Unlike a magnitude threshold, the count is exact even when magnitudes tie (e.g. elements that an
    earlier mask already zeroed): ties at the cut are broken by ``torch.topk``, never by pruning all or
    none of them. Only the smaller side of the split is ranked, so high sparsities cost no more than
    low ones.

    Args:
        tensor: a floating-point tensor.
        desired_sparsity: fraction of elements to prune, in [0, 1].
        dtype: the mask's dtype (default: ``tensor``'s; pruners store ``torch.bool``, a quarter of float32).
    Returns:
        0/1 mask in ``dtype`` on ``tensor``'s device with exactly that many zeros.
    Raises:
        ValueError: for a sparsity outside [0, 1].
    """
    _check_float_tensor(tensor, "create_mask_level_criterion")
    numel = tensor.numel()
    num_pruned = pruned_element_count(numel, desired_sparsity)
    with torch.no_grad():
        magnitudes = tensor.detach().abs().reshape(-1)
        if num_pruned <= numel - num_pruned:
            mask = torch.ones_like(tensor, dtype=dtype, memory_format=torch.contiguous_format)
            if num_pruned:
                smallest = torch.topk(magnitudes, num_pruned, largest=False, sorted=False).indices
                mask.view(-1).index_fill_(0, smallest, 0)
        else:
            mask = torch.zeros_like(tensor, dtype=dtype, memory_format=torch.contiguous_format)
            kept = numel - num_pruned
            if kept:
                largest = torch.topk(magnitudes, kept, largest=True, sorted=False).indices
                mask.view(-1).index_fill_(0, largest, 1)
    return mask


def weights_std(tensor: torch.Tensor) -> torch.Tensor:
    """Standard deviation of ``tensor``'s elements as a 0-dim tensor (0 for a single element)."""
    with torch.no_grad():
        return torch.std(tensor.detach(), correction=1 if tensor.numel() > 1 else 0)


def create_mask_sensitivity_criterion(tensor: torch.Tensor, sensitivity: float) -> torch.Tensor:
    """Han et al. 2015 criterion: keeps the elements with ``|w| > std(w) * sensitivity``.

    Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
    NIPS 2015 (arXiv:1506.02626): the threshold is a quality parameter times the layer's weight
    standard deviation, so one sensitivity suits layers of different scale.

    Args:
        tensor: a floating-point tensor.
        sensitivity: the multiplier of the standard deviation (>= 0).
    Returns:
        0/1 mask in ``tensor``'s dtype and device.
    """
    _check_float_tensor(tensor, "create_mask_sensitivity_criterion")
    return create_mask_threshold_criterion(tensor, weights_std(tensor) * sensitivity)


def mask_tensor(tensor: torch.Tensor, mask: Optional[torch.Tensor], inplace: bool = True) -> torch.Tensor:
    """Multiplies ``tensor`` by the 0/1 ``mask``, without recording gradients.

    Args:
        tensor: the tensor to mask (e.g. a weight).
        mask: a tensor of the same shape, or None (nothing masked).
        inplace: modify ``tensor`` (True, and return it) or return a masked copy.
    Raises:
        ArgumentError: the shapes differ.
    """
    if mask is None:
        return tensor
    if mask.shape != tensor.shape:
        raise ArgumentError(f"mask shape {tuple(mask.shape)} differs from the tensor's {tuple(tensor.shape)}")
    with torch.no_grad():
        return tensor.mul_(mask) if inplace else tensor.mul(mask)
