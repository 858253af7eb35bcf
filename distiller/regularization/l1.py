"""Element-wise L1 regularization (lasso): drives individual weights to zero.

Tibshirani 1996, "Regression Shrinkage and Selection via the Lasso"; used for network pruning by
Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks".
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch

from ..masking import ParameterMasker
from ..registry import register_regularizer
from ..spec import validated
from ..thresholding import Regims, Strength, ThresholdCriteria, threshold_mask
from .base import Regularizer


@register_regularizer
class L1Regularizer(Regularizer):
    """Adds ``strength * sum(|w|)`` per weight to the loss.

    With ``threshold_criteria`` set (any of ``'Mean_Abs'``, ``'Max'``: for single elements they agree),
    after each mini-batch the weights whose magnitude is at or below ``strength`` are zeroed.

    Args:
        name: instance name.
        model: the model (given automatically by the YAML schedule).
        reg_regims: parameter name / regex -> strength (a number >= 0).
        threshold_criteria: None, ``'Mean_Abs'`` or ``'Max'``.

    YAML::

        l1_reg:
          class: L1Regularizer
          reg_regims:
            conv1.weight: 0.0001
            fc.weight: 0.0005
          # threshold_criteria: Mean_Abs
    """

    reg_regims: dict[str, float]

    @validated
    def __init__(self, name: str, model: torch.nn.Module, reg_regims: Regims[Strength],
                 threshold_criteria: Optional[ThresholdCriteria] = None) -> None:
        super().__init__(name, model, reg_regims, threshold_criteria)

    def loss(self, param: torch.Tensor, param_name: str, regularizer_loss: torch.Tensor,
             zeros_mask_dict: Mapping[str, ParameterMasker]) -> torch.Tensor:
        strength = self.regim(param_name)
        return regularizer_loss + strength * param.abs().sum()

    def threshold(self, param: torch.Tensor, param_name: str, zeros_mask_dict: Mapping[str, ParameterMasker]) -> None:
        if self.threshold_criteria is None:
            return
        zeros_mask_dict[param_name].mask = threshold_mask(param, self.regim(param_name))
