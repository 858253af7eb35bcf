"""Magnitude-threshold pruning, and the per-parameter settings shared by the element-wise pruners.

Element-wise pruners take their per-parameter settings as a mapping from parameter names / regular
expressions (``'*'``: every targeted parameter) to a number; :class:`PerParameterValuePruner` holds such a
mapping and looks the value of a parameter up at pruning time.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..registry import register_pruner
from ..spec import validated
from ..thresholding import Regims
from .base import MaskDict, Meta, NonNegativeReal, ParameterPruner, setting_for
from .masks import create_mask_threshold_criterion


class PerParameterValuePruner(ParameterPruner):
    """Base of the pruners configured by a ``{name or regex or '*': number}`` mapping.

    The subclass's ``@validated`` constructor checks the mapping (see :mod:`distiller.spec`).

    Args:
        name: instance name.
        arg_name: the constructor argument holding the mapping (for messages).
        values: the mapping.
    """

    def __init__(self, name: str, arg_name: str, values: Mapping[str, float]) -> None:
        super().__init__(name)
        self.arg_name = arg_name
        self.values = dict(values)

    def targets(self) -> list[str]:
        return list(self.values)

    def value_for(self, param_name: str) -> float:
        """The configured value of ``param_name``: exact name, else first matching regex, else ``'*'``.

        Raises:
            KeyError: when nothing in the mapping matches ``param_name``.
        """
        return setting_for(self.name, self.arg_name, self.values, param_name)


@register_pruner
class MagnitudeParameterPruner(PerParameterValuePruner):
    """Prunes the elements whose magnitude is at most a fixed threshold (mask = ``|w| > threshold``).

    The simplest element-wise pruner (Han et al. 2015 prune by magnitude; here the threshold is given
    directly instead of derived from the weights' spread, see :class:`SensitivityPruner`).

    Args:
        name: instance name.
        thresholds: ``{parameter name or regex or '*': threshold >= 0}``.

    YAML::

        my_pruner:
          class: MagnitudeParameterPruner
          thresholds:
            'conv1.weight': 0.02
            '*': 0.01
    """

    @validated
    def __init__(self, name: str, thresholds: Regims[NonNegativeReal]) -> None:
        super().__init__(name, "thresholds", thresholds)

    @property
    def thresholds(self) -> dict[str, float]:
        return self.values

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = create_mask_threshold_criterion(param, self.value_for(param_name))
