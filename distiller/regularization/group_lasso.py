"""Group lasso (structured sparsity learning): drives whole kernels, filters, channels, rows or columns to zero.

Yuan & Lin 2006, "Model selection and estimation in regression with grouped variables"; applied to
deep networks by Wen et al. 2016, "Learning Structured Sparsity in Deep Neural Networks" (SSL,
arXiv:1608.03665). The term for one weight is ``strength * sum_g ||w_g||_2`` over its groups ``g``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Optional

import torch

from ..masking import ParameterMasker
from ..norms import structure_view
from ..registry import register_regularizer
from ..spec import validated
from ..thresholding import Regims, StrengthAndGroup, ThresholdCriteria, group_threshold_mask
from .base import Regularizer

#: The group types a ``reg_regims`` entry of a group regularizer may name.
GroupLassoType = Literal["2D", "Rows", "Cols", "Rows+Cols", "Channels", "Filters", "3D", "4D", "Channels+4D"]

#: YAML group type -> the structure types (see distiller.norms) whose group norms are penalised.
GROUP_TYPES: dict[GroupLassoType, tuple[str, ...]] = {
    "2D": ("2D",), "Rows": ("Rows",), "Cols": ("Cols",), "Rows+Cols": ("Rows", "Cols"), "Channels": ("Channels",),
    "Filters": ("Filters",), "3D": ("Filters",), "4D": ("4D",), "Channels+4D": ("Channels", "4D")}


def group_l2_norms(param: torch.Tensor, structure: str) -> torch.Tensor:
    """Differentiable L2 norm of each ``structure`` group of ``param`` (1D tensor on its device)."""
    return torch.linalg.vector_norm(structure_view(param, structure), ord=2, dim=1)


@register_regularizer
class GroupLassoRegularizer(Regularizer):
    """Adds ``strength * sum of the L2 norms of the groups`` of each weight to the loss (Wen et al. 2016).

    Composite group types add both terms (``Rows+Cols``, ``Channels+4D``). With ``threshold_criteria``,
    after each mini-batch the groups whose ``Mean_Abs``/``Max`` magnitude is at or below ``strength``
    are zeroed (for composite types, a group of either kind).

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule).
        reg_regims: parameter name / regex -> ``[strength, group_type]`` (strength >= 0) with ``group_type``
            in ``2D``, ``Rows``, ``Cols``, ``Rows+Cols``, ``Channels``, ``Filters``/``3D``, ``4D``, ``Channels+4D``.
        threshold_criteria: None, ``'Mean_Abs'`` or ``'Max'``.

    YAML::

        filter_lasso:
          class: GroupLassoRegularizer
          reg_regims:
            conv1.weight: [0.0002, Filters]
            conv2.weight: [0.0002, Channels]
          threshold_criteria: Mean_Abs
    """

    reg_regims: dict[str, tuple[float, GroupLassoType]]

    @validated
    def __init__(self, name: str, model: torch.nn.Module, reg_regims: Regims[StrengthAndGroup[GroupLassoType]],
                 threshold_criteria: Optional[ThresholdCriteria] = None) -> None:
        super().__init__(name, model, reg_regims, threshold_criteria)

    def group_term(self, norms: torch.Tensor) -> torch.Tensor:
        """The penalty of one weight's group norms (group lasso: their sum)."""
        return norms.sum()

    def loss(self, param: torch.Tensor, param_name: str, regularizer_loss: torch.Tensor,
             zeros_mask_dict: Mapping[str, ParameterMasker]) -> torch.Tensor:
        strength, group_type = self.regim(param_name)
        for structure in GROUP_TYPES[group_type]:
            regularizer_loss = regularizer_loss + strength * self.group_term(group_l2_norms(param, structure))
        return regularizer_loss

    def threshold(self, param: torch.Tensor, param_name: str, zeros_mask_dict: Mapping[str, ParameterMasker]) -> None:
        if self.threshold_criteria is None:
            return
        strength, group_type = self.regim(param_name)
        mask = torch.ones_like(param)
        for structure in GROUP_TYPES[group_type]:
            mask = mask * group_threshold_mask(param, structure, strength, self.threshold_criteria)
        zeros_mask_dict[param_name].mask = mask
