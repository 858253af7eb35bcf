"""Masks from thresholds: element-wise and per structure (kernels, rows, columns, filters, channels, layers).

Used by :class:`~distiller.pruning.StructureParameterPruner` and by the regularizers' optional
thresholding (Wen et al. 2016, "Learning Structured Sparsity in Deep Neural Networks": groups driven to
near zero by group lasso are then removed). Structures are those of :mod:`distiller.norms`.
"""
from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Optional, TypeVar, Union

import annotated_types
import torch
from pydantic import BeforeValidator

from .errors import ArgumentError
from .norms import canonical_group_type, expand_structure_mask, structure_view
from .spec import NonNegativeReal

#: How a structure's magnitude is scored: mean or largest absolute value.
ThresholdCriteria = Literal["Mean_Abs", "Max"]
THRESHOLD_CRITERIA: tuple[str, ...] = typing.get_args(ThresholdCriteria)

_V = TypeVar("_V")
_G = TypeVar("_G")

#: A regularization strength or a threshold: a number >= 0.
Strength = NonNegativeReal
#: ``reg_regims``: a non-empty mapping of parameter name / regular expression -> a value of type ``_V``
#: (e.g. ``Regims[Strength]``).
Regims = Annotated[Mapping[str, _V], annotated_types.MinLen(1)]


def _as_pair(value: Any) -> Any:
    """YAML writes a ``[strength, group_type]`` entry as a list: the pair the spec checks."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(value)
    raise ValueError("write [strength, group_type], e.g. [0.0002, Filters]")


#: A ``reg_regims`` entry ``[strength, group_type]`` whose group type is one of the ``Literal`` ``_G``.
StrengthAndGroup = Annotated[tuple[Strength, _G], BeforeValidator(_as_pair)]


def threshold_mask(weights: torch.Tensor, threshold: Union[float, torch.Tensor]) -> torch.Tensor:
    """0/1 mask (``weights``' dtype and device) keeping the elements whose magnitude exceeds ``threshold``."""
    return (weights.detach().abs() > threshold).to(weights.dtype)


def group_scores(param: torch.Tensor, group_type: str, threshold_criteria: str,
                 block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Per-structure magnitude: mean (``'Mean_Abs'``) or largest (``'Max'``) absolute value.

    Args:
        param: conv or Linear weight.
        group_type: ``'2D'``, ``'Rows'``, ``'Cols'``, ``'3D'``/``'Filters'``, ``'4D'``, ``'Channels'``
            or ``'Blocks'``.
        threshold_criteria: ``'Mean_Abs'`` or ``'Max'``.
        block_shape: for ``'Blocks'``.
    Returns:
        1D tensor, one score per structure, ordered as :func:`distiller.norms.structure_view`.
    Raises:
        ValueError: for an unknown criterion or structure type.
    """
    if threshold_criteria not in THRESHOLD_CRITERIA:
        raise ArgumentError(f"unknown threshold_criteria {threshold_criteria!r}; expected one of "
                            f"{list(THRESHOLD_CRITERIA)}")
    magnitudes = structure_view(param.detach(), group_type, block_shape).abs()
    return magnitudes.mean(dim=1) if threshold_criteria == "Mean_Abs" else magnitudes.amax(dim=1)


def group_threshold_binary_map(param: torch.Tensor, group_type: str, threshold: Union[float, torch.Tensor],
                               threshold_criteria: str, block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """One 0/1 entry per structure (``param``'s dtype): 1 where the structure's ``threshold_criteria``
    score (see :func:`group_scores`) is strictly greater than ``threshold``.

    Args:
        param: conv ``[out, in, kh, kw]`` or Linear ``[out, in]`` weight.
        group_type: ``'2D'``, ``'Rows'``, ``'Cols'``, ``'3D'``/``'Filters'``, ``'4D'``, ``'Channels'``, ``'Blocks'``.
        threshold: a number, or a tensor broadcastable to one value per structure.
        threshold_criteria: ``'Mean_Abs'`` or ``'Max'``.
        block_shape: for ``'Blocks'``.
    """
    scores = group_scores(param, group_type, threshold_criteria, block_shape)
    return (scores > torch.as_tensor(threshold, device=param.device)).to(param.dtype)


def group_threshold_mask(param: torch.Tensor, group_type: str, threshold: Union[float, torch.Tensor],
                         threshold_criteria: str, binary_map: Optional[torch.Tensor] = None,
                         block_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Mask (``param``'s shape, dtype and device) that zeroes every structure whose magnitude score is at
    or below ``threshold``; for ``'4D'`` the whole tensor survives or goes. Arguments as
    :func:`group_threshold_binary_map`, plus:

    Args:
        binary_map: a per-structure 0/1 map computed before (e.g. by :func:`group_threshold_binary_map` on
            another layer whose structures must match); when given, ``threshold`` and ``threshold_criteria``
            are not used and this map is expanded to ``param``'s shape.
    Raises:
        distiller.errors.ArgumentError: ``binary_map`` does not have one entry per structure of ``param``.

    Example:
        >>> mask = group_threshold_mask(conv.weight, 'Filters', 1e-3, 'Mean_Abs')
    """
    group_type = canonical_group_type(group_type)
    if binary_map is None:
        binary_map = group_threshold_binary_map(param, group_type, threshold, threshold_criteria, block_shape)
    else:
        structures = structure_view(param.detach(), group_type, block_shape).shape[0]
        if binary_map.numel() != structures:
            raise ArgumentError(f"binary_map has {binary_map.numel()} entries but a weight of shape "
                                f"{tuple(param.shape)} has {structures} '{group_type}' structures")
        binary_map = binary_map.to(device=param.device, dtype=param.dtype)
    return expand_structure_mask(binary_map, param.shape, group_type, block_shape).contiguous()


class GroupThresholdMixin:
    """Adds :func:`group_threshold_mask` as a method, for pruners and regularizers written against Distiller's
    mixin of this name."""

    def group_threshold_mask(self, param: torch.Tensor, group_type: str, threshold: Any,
                             threshold_criteria: str) -> torch.Tensor:
        """See :func:`group_threshold_mask` (returns the mask)."""
        return group_threshold_mask(param, group_type, threshold, threshold_criteria)

