"""Automated Gradual Pruning (AGP).

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model compression",
2017 (arXiv:1710.01878). Sparsity rises from ``initial_sparsity`` to ``final_sparsity`` along a cubic
curve, fast at first and slowly at the end, between the policy's ``starting_epoch`` and ``ending_epoch``.
The rate schedule is a pure function; what gets pruned to reach the target (elements, filters, ...) is
left to the subclass.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Optional

import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from ..spec import Fraction, validated
from .base import MaskDict, Meta, ParameterPruner, WeightNames
from .masks import create_mask_level_criterion


def agp_target_sparsity(initial_sparsity: float, final_sparsity: float, starting_epoch: float, ending_epoch: float,
                        frequency: Optional[int], current_epoch: float) -> float:
    """The AGP sparsity target for ``current_epoch``.

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / span) ** 3`` where ``span`` is the last pruning epoch
    relative to ``starting_epoch``: ``((ending_epoch - starting_epoch - 1) // frequency) * frequency``.
    The target reaches ``final_sparsity`` at the last scheduled pruning epoch and stays there.

    Raises:
        ValueError: when the schedule leaves no room for gradual pruning (``span <= 0``).
    """
    frequency = frequency or 1
    span = ((ending_epoch - starting_epoch - 1) // frequency) * frequency
    if span <= 0:
        raise ArgumentError(f"AGP needs at least two pruning epochs: starting_epoch={starting_epoch}, "
                            f"ending_epoch={ending_epoch}, frequency={frequency} give a span of {span}; "
                            f"increase ending_epoch or lower frequency")
    progress = min(max((current_epoch - starting_epoch) / span, 0.0), 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


class AgpPruningRate:
    """The AGP rate schedule as Distiller's rate-scheduler object: ``step`` returns the target sparsity of
    :func:`agp_target_sparsity`. A pruner's ``rate_scheduler_factory`` builds one from its sparsities; a custom
    factory returns any object with the same ``step``.
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float) -> None:
        self.initial_sparsity, self.final_sparsity = initial_sparsity, final_sparsity

    def step(self, current_epoch: int, starting_epoch: int, ending_epoch: int, freq: Optional[int]) -> float:
        """The target sparsity at ``current_epoch`` of a policy over ``[starting_epoch, ending_epoch)``."""
        return agp_target_sparsity(self.initial_sparsity, self.final_sparsity, starting_epoch, ending_epoch, freq,
                                   current_epoch)


#: ``rate_scheduler_factory(initial_sparsity, final_sparsity)``: an object whose ``step(current_epoch,
#: starting_epoch, ending_epoch, freq)`` gives the target sparsity (e.g. :class:`AgpPruningRate`).
RateSchedulerFactory = Callable[[float, float], Any]


class AutomatedGradualPrunerBase(ParameterPruner):
    """AGP rate schedule; subclasses decide which elements/structures reach the target.

    Args:
        name: instance name.
        initial_sparsity, final_sparsity: fractions in [0, 1).
        weights: parameter names / regular expressions to prune.
        rate_scheduler_factory: ``factory(initial_sparsity, final_sparsity)`` returning the object whose
            ``step(current_epoch, starting_epoch, ending_epoch, freq)`` gives each epoch's target sparsity
            (Distiller's argument; default: :class:`AgpPruningRate`).
    """

    @validated
    def __init__(self, name: str, initial_sparsity: Fraction, final_sparsity: Fraction, weights: WeightNames,
                 rate_scheduler_factory: RateSchedulerFactory = AgpPruningRate) -> None:
        super().__init__(name)
        if final_sparsity < initial_sparsity:
            raise ArgumentError(f"{name}: final_sparsity={final_sparsity} is below initial_sparsity={initial_sparsity}",
                                argument="final_sparsity")
        self.initial_sparsity = initial_sparsity
        self.final_sparsity = final_sparsity
        self.weights = list(weights)
        self.rate_scheduler = rate_scheduler_factory(self.initial_sparsity, self.final_sparsity)

    def targets(self) -> list[str]:
        return self.weights

    def compute_target_sparsity(self, meta: Meta) -> float:
        try:
            return self.rate_scheduler.step(meta["current_epoch"], meta["starting_epoch"], meta["ending_epoch"],
                                            meta["frequency"])
        except ValueError as err:
            raise ArgumentError(f"{self.name}: {err}") from None

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        self.prune_to_target_sparsity(param, param_name, zeros_mask_dict,
                                      self.compute_target_sparsity(meta), meta["model"])

    @abc.abstractmethod
    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: Optional[torch.nn.Module]) -> None:
        """Sets the mask of ``param`` so that ``target_sparsity`` of it (elements or structures) is zero."""


#: ``pruning_fn(param, param_name, zeros_mask_dict, target_sparsity, model)``: sets the mask itself.
PruningFn = Callable[[torch.Tensor, str, MaskDict, float, Optional[torch.nn.Module]], None]


@register_pruner
class AutomatedGradualPruner(AutomatedGradualPrunerBase):
    """Element-wise AGP: at each pruning epoch, the smallest-magnitude elements of every targeted weight
    are pruned until it holds exactly the AGP target sparsity (see :func:`agp_target_sparsity`).

    Zhu & Gupta 2017 (arXiv:1710.01878). Elements masked earlier have magnitude 0, so they stay pruned
    as the target grows.

    Args:
        name: instance name.
        initial_sparsity: sparsity at ``starting_epoch``, in [0, 1).
        final_sparsity: sparsity reached at the last pruning epoch, in [``initial_sparsity``, 1).
        weights: parameter names / regular expressions to prune.
        rate_scheduler_factory: see :class:`AutomatedGradualPrunerBase` (Python only).
        pruning_fn: optional callable ``(param, param_name, zeros_mask_dict, target_sparsity, model)``
            replacing the element-wise level criterion (for custom rankings in Python code).

    YAML::

        agp_pruner:
          class: AutomatedGradualPruner
          initial_sparsity: 0.05
          final_sparsity: 0.80
          weights: [conv1.weight, 'conv[2-9]\\.weight', fc.weight]   # names or regular expressions

    Scheduled, for example, every second epoch of the first 30::

        policies:
          - pruner:
              instance_name: agp_pruner
            starting_epoch: 0
            ending_epoch: 30
            frequency: 2
    """

    @validated
    def __init__(self, name: str, initial_sparsity: Fraction, final_sparsity: Fraction, weights: WeightNames,
                 rate_scheduler_factory: RateSchedulerFactory = AgpPruningRate,
                 pruning_fn: Optional[PruningFn] = None) -> None:
        super().__init__(name, initial_sparsity, final_sparsity, weights, rate_scheduler_factory)
        self.pruning_fn = pruning_fn

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: Optional[torch.nn.Module] = None) -> None:
        if self.pruning_fn is not None:
            self.pruning_fn(param, param_name, zeros_mask_dict, target_sparsity, model)
            return
        zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, target_sparsity, dtype=torch.bool)
