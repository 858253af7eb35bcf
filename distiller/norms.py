"""Norms of weight structures (filters, channels, rows, columns, kernels, blocks) and ranked keep-masks.

Pure functions: tensors in, tensors out, on the input's device. Every structure type is defined once,
as a 2D *structure view* of the weight (one row per structure, see :func:`structure_view`); norms reduce
the rows of that view and :func:`expand_structure_mask` maps a per-structure mask back to the weight's
shape. Convolution weights are ``[out, in/groups, kh, kw]``, Linear weights ``[out, in]``.

Structure types (``group_type``, Distiller's YAML names):

* ``'Filters'`` (alias ``'3D'``): output filters / rows of a Linear weight -> ``out`` structures.
* ``'Channels'``: input channels (``weight[:, c]``) / columns of a Linear weight -> ``in`` structures.
* ``'Rows'``, ``'Cols'``: rows / columns of the GEMM (im2col) view ``weight.view(out, -1)``
  (Wen et al. 2016); for a Linear weight they equal filters / channels.
* ``'2D'`` (alias ``'Kernels'``): 2D kernels ``weight[o, i]`` -> ``out * in`` structures.
* ``'Blocks'``: ``block_shape`` blocks tiling the weight (e.g. ``[1, 4, 1, 1]``: 4 channels of one filter).
* ``'4D'``: the whole tensor -> one structure.

Example:
    >>> w = torch.randn(8, 4, 3, 3)
    >>> keep = ranked_structure_mask(filters_lp_norm(w, p=1), fraction=0.5)
    >>> mask = expand_structure_mask(keep, w.shape, 'Filters')   # zero the 4 weakest filters
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Optional

import torch

from .errors import ArgumentError

GROUP_TYPE_ALIASES = {"3D": "Filters", "Filters": "Filters", "Channels": "Channels", "Rows": "Rows",
                      "Cols": "Cols", "2D": "2D", "Kernels": "2D", "Blocks": "Blocks", "4D": "4D"}


def canonical_group_type(group_type: str) -> str:
    """Returns the canonical name of ``group_type`` (``'3D'`` -> ``'Filters'``, ``'Kernels'`` -> ``'2D'``).

    Raises:
        ValueError: for an unknown structure type, listing the valid ones.
    """
    try:
        return GROUP_TYPE_ALIASES[group_type]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown group_type {group_type!r}; expected one of "
                            f"{sorted(GROUP_TYPE_ALIASES)}") from None


def _check_weight(weight: torch.Tensor, group_type: str) -> None:
    if weight.dim() not in (2, 4) and group_type not in ("4D", "Blocks"):
        raise ArgumentError(f"group_type {group_type!r} needs a 2D (Linear) or 4D (Conv2d) weight, "
                            f"got shape {tuple(weight.shape)}")


def _check_block_shape(weight_shape: Sequence[int], block_shape: Optional[Sequence[int]]) -> list[int]:
    if block_shape is None:
        raise ArgumentError("group_type 'Blocks' needs a block_shape, e.g. [1, 4, 1, 1]")
    shape = [int(b) for b in block_shape]
    if len(shape) == 4 and len(weight_shape) == 2 and shape[2:] == [1, 1]:
        shape = shape[:2]          # Distiller's 4-element block shape on a Linear weight
    if len(shape) != len(weight_shape) or any(b <= 0 for b in shape):
        raise ArgumentError(f"block_shape {shape} does not fit a weight of shape {tuple(weight_shape)}: "
                            f"give one positive size per weight dimension, e.g. [1, 4, 1, 1] for a conv")
    if any(s % b for s, b in zip(weight_shape, shape)):
        raise ArgumentError(f"block_shape {shape} does not tile weight shape {tuple(weight_shape)}: "
                            f"each weight dimension must be a multiple of the block dimension")
    return shape


def _block_permutations(ndim: int) -> tuple[list[int], list[int]]:
    """Dimension orders that move block-grid dims first (and back), for an ``ndim``-D weight."""
    to_grid = [2 * d for d in range(ndim)] + [2 * d + 1 for d in range(ndim)]
    back = [0] * (2 * ndim)
    for position, dim in enumerate(to_grid):
        back[dim] = position
    return to_grid, back


def structure_view(weight: torch.Tensor, group_type: str, block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Returns ``weight`` as a 2D tensor with one row per structure of ``group_type``.

    Args:
        weight: conv ``[out, in/groups, kh, kw]`` or Linear ``[out, in]`` weight.
        group_type: a structure type (see the module docstring).
        block_shape: the block size per weight dimension, for ``'Blocks'``.
    Returns:
        tensor ``[num_structures, elements_per_structure]`` (a view or copy of ``weight``).
    Raises:
        ValueError: for an unknown ``group_type``, a weight of the wrong rank or a block shape that does
            not tile the weight.
    """
    group_type = canonical_group_type(group_type)
    _check_weight(weight, group_type)
    if group_type in ("Filters", "Rows"):
        return weight.reshape(weight.shape[0], -1)
    if group_type == "Channels":
        return weight.transpose(0, 1).reshape(weight.shape[1], -1)
    if group_type == "Cols":
        return weight.reshape(weight.shape[0], -1).t()
    if group_type == "2D":
        return weight.reshape(weight.shape[0] * weight.shape[1], -1)
    if group_type == "4D":
        return weight.reshape(1, -1)
    blocks = _check_block_shape(weight.shape, block_shape)
    split = [size for dim, b in zip(weight.shape, blocks) for size in (dim // b, b)]
    to_grid, _ = _block_permutations(weight.dim())
    grid = weight.reshape(split).permute(to_grid)
    return grid.reshape(math.prod(split[0::2]), math.prod(blocks))


def expand_structure_mask(structure_mask: torch.Tensor, weight_shape: Sequence[int], group_type: str,
                          block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Maps a per-structure mask (as ordered by :func:`structure_view`) to a mask of ``weight_shape``.

    Args:
        structure_mask: 1D tensor, one entry per structure (bool or 0/1).
        weight_shape: the weight's shape.
        group_type: the structure type of ``structure_mask``.
        block_shape: the block size per weight dimension, for ``'Blocks'``.
    Returns:
        tensor of ``weight_shape`` with ``structure_mask``'s dtype and device.
    """
    group_type = canonical_group_type(group_type)
    shape = tuple(weight_shape)
    per_structure = structure_mask.reshape(-1, 1)
    if group_type == "Blocks":
        blocks = _check_block_shape(shape, block_shape)
        grid = [s // b for s, b in zip(shape, blocks)]
        _, back = _block_permutations(len(shape))
        tiled = per_structure.reshape(grid + [1] * len(shape)).expand(grid + blocks)
        return tiled.permute(back).reshape(shape)
    view_shape = structure_view(torch.empty(shape, device="meta"), group_type).shape
    expanded = per_structure.expand(view_shape)
    if group_type == "Channels":
        rest = (shape[0],) + shape[2:]
        return expanded.reshape((shape[1],) + rest).transpose(0, 1).reshape(shape)
    if group_type == "Cols":
        expanded = expanded.t()
    return expanded.reshape(shape)


def structures_lp_norm(weight: torch.Tensor, group_type: str, p: float = 1, group_len: int = 1,
                       length_normalized: bool = False, block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Lp norm of each group of ``group_len`` consecutive structures of ``weight``.

    Args:
        weight: conv or Linear weight.
        group_type: a structure type (see the module docstring).
        p: the norm order (1, 2, ``float('inf')``, ...).
        group_len: structures per group: consecutive structures share one norm.
        length_normalized: divide each norm by the number of elements in its group, so groups of
            different sizes compare.
        block_shape: for ``'Blocks'``.
    Returns:
        1D tensor with ``num_structures // group_len`` norms, on ``weight``'s device.
    Raises:
        ValueError: when ``group_len`` does not divide the number of structures.
    """
    view = structure_view(weight.detach(), group_type, block_shape)
    count, length = view.shape
    if group_len < 1 or count % group_len:
        raise ArgumentError(f"group_len={group_len} must be a positive divisor of the {count} "
                            f"{group_type} structures of a weight of shape {tuple(weight.shape)}")
    grouped = view.reshape(count // group_len, group_len * length)
    norms = torch.linalg.vector_norm(grouped, ord=p, dim=1)
    return norms / grouped.shape[1] if length_normalized else norms


def filters_lp_norm(weight: torch.Tensor, p: float = 1, group_len: int = 1,
                    length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each output filter (conv) or row (Linear): tensor ``[out // group_len]``."""
    return structures_lp_norm(weight, "Filters", p, group_len, length_normalized)


def channels_lp_norm(weight: torch.Tensor, p: float = 1, group_len: int = 1,
                     length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each input channel (conv) or column (Linear): tensor ``[in // group_len]``.

    For a grouped or depthwise convolution dim 1 of the weight holds the input channels *of one group*
    (``in / groups``): entry ``c`` then measures channel ``c`` of every group together.
    """
    return structures_lp_norm(weight, "Channels", p, group_len, length_normalized)


def rows_lp_norm(weight: torch.Tensor, p: float = 1, group_len: int = 1,
                 length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each row of ``weight.view(out, -1)``: tensor ``[out // group_len]``."""
    return structures_lp_norm(weight, "Rows", p, group_len, length_normalized)


def cols_lp_norm(weight: torch.Tensor, p: float = 1, group_len: int = 1,
                 length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each column of ``weight.view(out, -1)``: tensor ``[in*kh*kw // group_len]``."""
    return structures_lp_norm(weight, "Cols", p, group_len, length_normalized)


def kernels_lp_norm(weight: torch.Tensor, p: float = 1, group_len: int = 1,
                    length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each 2D kernel ``weight[o, i]``: tensor ``[out * in // group_len]`` (row-major)."""
    return structures_lp_norm(weight, "2D", p, group_len, length_normalized)


def blocks_lp_norm(weight: torch.Tensor, block_shape: Sequence[int], p: float = 1,
                   length_normalized: bool = False) -> torch.Tensor:
    """Lp norm of each ``block_shape`` block tiling ``weight``, in row-major block-grid order."""
    return structures_lp_norm(weight, "Blocks", p, 1, length_normalized, block_shape)


def l1_norm(tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Sum of absolute values along ``dim``."""
    return torch.linalg.vector_norm(tensor, ord=1, dim=dim)


def l2_norm(tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Euclidean norm along ``dim``."""
    return torch.linalg.vector_norm(tensor, ord=2, dim=dim)


def max_norm(tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Largest absolute value along ``dim``."""
    return torch.linalg.vector_norm(tensor, ord=float("inf"), dim=dim)


def num_structures_to_prune(num_structures: int, fraction: float, group_size: int = 1,
                            rounding_fn: Callable[[float], float] = math.floor) -> int:
    """How many of ``num_structures`` to prune for ``fraction``, in multiples of ``group_size``.

    ``rounding_fn(fraction * num_structures / group_size) * group_size``, capped so that at least one
    structure survives.

    Raises:
        ValueError: for a ``fraction`` outside [0, 1] or a ``group_size`` below 1.
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ArgumentError(f"fraction to prune {fraction} is outside [0, 1]")
    if int(group_size) < 1:
        raise ArgumentError(f"group_size={group_size} must be at least 1")
    count = int(rounding_fn(fraction * num_structures / group_size)) * int(group_size)
    return max(0, min(count, num_structures - 1))


def ranked_structure_mask(importance: torch.Tensor, fraction: float, group_size: int = 1,
                          rounding_fn: Callable[[float], float] = math.floor, noise: float = 0.0,
                          generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Keep-mask that prunes the ``fraction`` least important structures, in multiples of ``group_size``.

    Args:
        importance: 1D tensor, one score per structure (higher = more important).
        fraction: the fraction of structures to prune.
        group_size: prune a multiple of this many structures (e.g. 8 filters, hardware-friendly).
        rounding_fn: rounds ``fraction * n / group_size`` to a whole number of groups.
        noise: when > 0, Gaussian noise of ``noise * importance.std()`` is added to the scores before
            ranking (random exploration of near-ties).
        generator: optional ``torch.Generator`` for the noise.
    Returns:
        bool tensor shaped like ``importance``: True = keep. Ties are broken by index (lower pruned first).
    """
    if importance.dim() != 1:
        raise ArgumentError(f"importance must be 1D (one score per structure), got shape {tuple(importance.shape)}")
    count = num_structures_to_prune(importance.numel(), fraction, group_size, rounding_fn)
    scores = importance.detach().float()
    if noise > 0 and scores.numel() > 1:
        device = generator.device if generator is not None else scores.device
        gaussian = torch.randn(scores.shape, generator=generator, device=device).to(scores.device)
        scores = scores + noise * scores.std() * gaussian
    keep = torch.ones_like(scores, dtype=torch.bool)
    if count:
        order = torch.sort(scores, stable=True).indices
        keep[order[:count]] = False
    return keep
