"""Magnitude-threshold pruning, and the per-parameter settings shared by the element-wise pruners.

Element-wise pruners take their per-parameter settings as a mapping from parameter names / regular
expressions (``'*'``: every targeted parameter) to a number; :class:`PerParameterValuePruner` holds such a
mapping and looks the value of a parameter up at pruning time.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Optional

import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import validated
from ..thresholding import Regims
from .base import MaskDict, Meta, NonNegativeReal, ParameterPruner, setting_for
from .masks import create_mask_threshold_criterion


def as_number(owner: str, label: str, value: Any, minimum: Optional[float] = None,
              below: Optional[float] = None) -> float:
    """Returns ``value`` as a float after checking its type and range.

    Numeric strings are accepted because PyYAML reads exponent literals without a dot (``1e-3``) as
    strings.

    Args:
        owner: the pruner instance name, for the message.
        label: the argument (path) being checked, e.g. ``thresholds['conv1.weight']``.
        value: the value to check.
        minimum: smallest allowed value (inclusive), or None.
        below: exclusive upper bound, or None.
    Raises:
        ValueError: naming ``owner`` and ``label`` when the value is not a number or out of range.
    """
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or number != number:
        raise ArgumentError(f"{owner}: {label}={value!r} is not a number")
    if minimum is not None and number < minimum:
        raise ArgumentError(f"{owner}: {label}={value!r} must be at least {minimum}")
    if below is not None and number >= below:
        range_text = f"[{minimum}, {below})" if minimum is not None else f"below {below}"
        raise ArgumentError(f"{owner}: {label}={value!r} is outside {range_text}")
    return number


def as_weights_list(owner: str, weights: Any) -> list[str]:
    """Returns ``weights`` (one name/regex or a list of them) as a non-empty list of strings.

    Raises:
        ValueError: naming ``owner`` when ``weights`` is missing, empty or holds non-strings.
    """
    names = [weights] if isinstance(weights, str) else weights
    if not isinstance(names, (list, tuple)) or not names:
        raise ArgumentError(f"{owner}: 'weights' must be a non-empty list of parameter names or regular "
                            f"expressions, got {weights!r}")
    for index, entry in enumerate(names):
        if not isinstance(entry, str) or not entry:
            raise ArgumentError(f"{owner}: weights[{index}]={entry!r} is not a parameter name or regex")
    return list(names)


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
