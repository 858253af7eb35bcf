"""Pruning to an exact sparsity level per parameter."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..registry import register_pruner
from ..spec import Fraction, check_value, validated
from ..thresholding import Regims
from .base import MaskDict, Meta
from .magnitude import PerParameterValuePruner
from .masks import create_mask_level_criterion


@register_pruner
class SparsityLevelParameterPruner(PerParameterValuePruner):
    """Prunes the smallest-magnitude elements of each parameter until it reaches its sparsity level.

    Exactly ``floor(level * numel)`` elements are pruned (see :func:`create_mask_level_criterion`), so the
    result does not depend on the weights' scale, unlike a magnitude threshold.

    Args:
        name: instance name.
        levels: ``{parameter name or regex or '*': sparsity in [0, 1)}``.

    YAML::

        my_pruner:
          class: SparsityLevelParameterPruner
          levels:
            'conv1.weight': 0.5
            'fc.weight': 0.8
    """

    @validated
    def __init__(self, name: str, levels: Regims[Fraction]) -> None:
        super().__init__(name, "levels", levels)

    @property
    def levels(self) -> dict[str, float]:
        return self.values

    @levels.setter
    def levels(self, levels: Mapping[str, float]) -> None:
        # PruningPolicy's ``levels`` argument overrides the pruner's levels through this setter.
        self.values = dict(check_value(type(self).__name__, "levels", Regims[Fraction], levels))

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, self.value_for(param_name),
                                                                        dtype=torch.bool)
