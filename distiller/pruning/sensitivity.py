"""Sensitivity pruning: a magnitude threshold scaled by each layer's weight standard deviation."""
from __future__ import annotations

import torch

from ..registry import register_pruner
from ..spec import validated
from ..thresholding import Regims
from .base import MaskDict, Meta, NonNegativeReal
from .magnitude import PerParameterValuePruner
from .masks import create_mask_sensitivity_criterion


@register_pruner
class SensitivityPruner(PerParameterValuePruner):
    """Prunes the elements with ``|w| <= std(w) * sensitivity``.

    Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
    NIPS 2015 (arXiv:1506.02626). The threshold is recomputed from the current weights every time the
    policy prunes, so iterative prune / fine-tune cycles tighten it as the remaining weights change.
    Sensitivities per layer are typically chosen from a sensitivity analysis.

    Args:
        name: instance name.
        sensitivities: ``{parameter name or regex or '*': sensitivity >= 0}``.

    YAML::

        my_pruner:
          class: SensitivityPruner
          sensitivities:
            'conv1.weight': 0.25
            '*': 0.5
    """

    @validated
    def __init__(self, name: str, sensitivities: Regims[NonNegativeReal]) -> None:
        super().__init__(name, "sensitivities", sensitivities)

    @property
    def sensitivities(self) -> dict[str, float]:
        return self.values

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = create_mask_sensitivity_criterion(param,
                                                                             self.value_for(param_name))
