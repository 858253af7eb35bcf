"""Threshold-based structure pruning: zero every structure whose magnitude is below a threshold.

The structured counterpart of magnitude pruning; with group-lasso training (Wen et al. 2016, "Learning
Structured Sparsity in Deep Neural Networks") the groups the regularizer drove to near zero are removed.
"""
from __future__ import annotations

from typing import Literal

import torch

from ..registry import register_pruner
from ..spec import validated
from ..thresholding import Regims, StrengthAndGroup, ThresholdCriteria, group_threshold_mask
from .base import MaskDict, Meta, ParameterPruner, setting_for

#: The structures a threshold removes (:data:`distiller.norms.GROUP_TYPE_ALIASES` except ``'Blocks'``).
StructureGroupType = Literal["2D", "Kernels", "Rows", "Cols", "3D", "Filters", "4D", "Channels"]


@register_pruner
class StructureParameterPruner(ParameterPruner):
    """Zeroes the structures whose ``threshold_criteria`` magnitude is at or below their threshold.

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule).
        reg_regims: parameter name / regex -> ``[threshold, group_type]`` (threshold >= 0) with ``group_type`` in
            ``'2D'``, ``'Rows'``, ``'Cols'``, ``'3D'``/``'Filters'``, ``'4D'``, ``'Channels'``.
        threshold_criteria: ``'Mean_Abs'`` (mean absolute value) or ``'Max'`` (largest absolute value).

    YAML::

        filter_thresholder:
          class: StructureParameterPruner
          threshold_criteria: Mean_Abs
          reg_regims:
            conv2.weight: [0.005, Filters]
            fc.weight: [0.001, Rows]
    """

    @validated
    def __init__(self, name: str, model: torch.nn.Module, reg_regims: Regims[StrengthAndGroup[StructureGroupType]],
                 threshold_criteria: ThresholdCriteria) -> None:
        super().__init__(name)
        self.model = model
        self.reg_regims = dict(reg_regims)
        self.threshold_criteria = threshold_criteria

    def targets(self) -> list[str]:
        return list(self.reg_regims)

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        threshold, group_type = setting_for(self.name, "reg_regims", self.reg_regims, param_name)
        zeros_mask_dict[param_name].mask = group_threshold_mask(param, group_type, threshold,
                                                                self.threshold_criteria)
