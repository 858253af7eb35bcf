"""Random structure pruners: baselines for ranking criteria, exploration, and DropFilter-style training.

Random ranking is the control experiment for every importance criterion (Mittal et al. 2018, "Recovering
from Random Pruning: On the Plasticity of Deep Convolutional Neural Networks"). Bernoulli dropping of
filters at every mini-batch is a structured form of dropout (Park & Kwak 2016, "Analysis on the Dropout
Effect in Convolutional Neural Networks"; Gomez et al. 2019, "Learning Sparse Networks Using Targeted
Dropout").
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Annotated, Any, Optional, Union

import torch
from pydantic import BeforeValidator

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import Fraction, PositiveInt, validated
from .base import MaskDict, Meta, NonNegativeReal, WeightNames
from .importance import Importance
from .ranked import GroupDependency, L1RankedStructureParameterPruner, RankedStructureParameterPruner


def _as_pair(value: Any) -> Any:
    """YAML writes ``sparsity_range`` as a list: the ``(low, high)`` pair the spec checks."""
    return tuple(value) if isinstance(value, list) else value


#: ``[low, high]`` sparsity bounds, each in [0, 1).
SparsityRange = Annotated[tuple[Fraction, Fraction], BeforeValidator(_as_pair)]


@register_pruner
class RandomRankedFilterPruner(RankedStructureParameterPruner):
    """Prunes ``desired_sparsity`` of the structures chosen uniformly at random (a fresh draw per mask).

    Arguments as :class:`~distiller.pruning.L1RankedStructureParameterPruner`.

    YAML::

        random_filters:
          class: RandomRankedFilterPruner
          group_type: Filters
          desired_sparsity: 0.5
          weights: [conv1.weight, conv2.weight]
    """

    default_importance = "Random"


@register_pruner
class BernoulliFilterPruner(RandomRankedFilterPruner):
    """Drops each structure independently with probability ``desired_sparsity`` (a fresh draw per mask).

    The number dropped varies around ``desired_sparsity * n`` (``group_size`` and ``rounding_fn`` do not
    apply); at least one structure always survives. Scheduled every mini-batch with soft masks it is
    DropFilter-style regularization, see ``examples/drop_filter/``.

    YAML::

        drop_filters:
          class: BernoulliFilterPruner
          group_type: Filters
          desired_sparsity: 0.1
          weights: [conv1.weight, conv2.weight]
    """

    default_importance = "Bernoulli"


@register_pruner
class RandomLevelStructureParameterPruner(L1RankedStructureParameterPruner):
    """L1-ranked structure pruning at a random sparsity level, drawn uniformly from ``sparsity_range``
    once per pruning step (all weights of the step share it).

    Args:
        name, group_type, weights, group_dependency, kwargs, noise, group_size, rounding_fn, logging_fn,
            importance, dummy_input, dataset, model: as :class:`~distiller.pruning.L1RankedStructureParameterPruner`.
        sparsity_range: ``[low, high]`` with ``0 <= low <= high < 1``.

    YAML::

        random_level:
          class: RandomLevelStructureParameterPruner
          group_type: Filters
          sparsity_range: [0.1, 0.5]
          weights: [conv1.weight, conv2.weight]
    """

    @validated
    def __init__(self, name: str, group_type: str, sparsity_range: SparsityRange, weights: WeightNames,
                 group_dependency: Optional[GroupDependency] = None,
                 kwargs: Optional[dict[str, Any]] = None, noise: NonNegativeReal = 0.0, group_size: PositiveInt = 1,
                 rounding_fn: Union[Callable[[float], int], str] = math.floor,
                 logging_fn: Optional[Callable[[str], Any]] = None,
                 importance: Union[str, Importance, Callable[..., torch.Tensor], None] = None, dummy_input: Any = None,
                 dataset: Optional[str] = None, model: Optional[torch.nn.Module] = None) -> None:
        low, high = sparsity_range
        if low > high:
            raise ArgumentError(f"{name}: sparsity_range={list(sparsity_range)} has low > high; write [low, high]",
                                argument="sparsity_range")
        super().__init__(name, group_type, high, weights, group_dependency, kwargs, noise, group_size,
                         rounding_fn, logging_fn, importance, dummy_input, dataset, model)
        self.sparsity_range = (low, high)
        self._level: Optional[tuple[Any, float]] = None       # (step, sparsity) drawn for the current step

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        step = meta.get("current_epoch")
        if step is None or self._level is None or self._level[0] != step:
            self._level = (step, random.uniform(*self.sparsity_range))
        self.prune_to_target_sparsity(param, param_name, zeros_mask_dict, self._level[1], meta["model"], step=step)
