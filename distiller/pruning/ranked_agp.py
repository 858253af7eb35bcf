"""AGP-scheduled structure pruning: the AGP rate (Zhu & Gupta 2017) over structures ranked by an importance.

:class:`StructuredAGP` pairs :class:`~distiller.pruning.AutomatedGradualPrunerBase` (how much to prune at
each step) with a :class:`~distiller.pruning.RankedStructureParameterPruner` (which structures: the
``importance`` criterion, see :mod:`~distiller.pruning.importance`). Distiller's seven ``*_AGP`` classes are
registered aliases of it that only fix the default criterion. YAML (all share these arguments)::

    pruners:
      filter_pruner_agp:
        class: L1RankedStructureParameterPruner_AGP    # or StructuredAGP with importance: L1
        initial_sparsity: 0.05
        final_sparsity: 0.50
        group_type: Filters
        weights: [layer2.0.conv1.weight, layer2.1.conv1.weight, layer2.2.conv1.weight]
        # group_dependency: Leader       # optional: share the first weight's choice
        # group_dependency: Graph        # optional: prune whole dependency groups (removable by thinning)
        # dataset: cifar10               # Graph: example input shape when pruning before any forward pass
        # group_size: 4                  # optional

    policies:
      - pruner: {instance_name: filter_pruner_agp}
        starting_epoch: 0
        ending_epoch: 20
        frequency: 2
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..errors import ArgumentError
from ..registry import register_pruner
from .agp import AutomatedGradualPrunerBase
from .base import MaskDict, Meta
from .importance import Importance
from .ranked import GroupDependency, RankedStructureParameterPruner

__all__ = ["StructuredAGP", "L1RankedStructureParameterPruner_AGP", "L2RankedStructureParameterPruner_AGP",
           "GradientRankedFilterPruner_AGP", "RandomRankedFilterPruner_AGP", "BernoulliFilterPruner_AGP",
           "ActivationAPoZRankedFilterPruner_AGP", "ActivationMeanRankedFilterPruner_AGP"]


@register_pruner
class StructuredAGP(AutomatedGradualPrunerBase):
    """AGP schedule over the structures an ``importance`` criterion ranks lowest.

    Args:
        name: instance name.
        initial_sparsity, final_sparsity: AGP structure sparsity range, in [0, 1).
        group_type, weights, group_dependency, kwargs, noise, group_size, rounding_fn, importance,
            dummy_input, dataset, model: as :class:`~distiller.pruning.RankedStructureParameterPruner`
            (``importance`` defaults to the alias's criterion; :class:`StructuredAGP` itself needs one).

    YAML::

        taylor_agp:
          class: StructuredAGP
          importance: Taylor
          group_dependency: Graph      # whole dependency groups: what thinning removes with each filter
          initial_sparsity: 0.05
          final_sparsity: 0.50
          group_type: Filters
          weights: [conv1.weight, conv2.weight]

    Example::

        pruner = StructuredAGP("agp", 0.05, 0.5, "Filters", ["layer1.0.conv1.weight"], importance="Taylor",
                               group_dependency="Graph", dummy_input=torch.randn(1, 3, 32, 32))
    """

    #: Registered name of the criterion used when ``importance`` is not given (set by the aliases).
    default_importance: Optional[str] = None

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: Union[str, Sequence[str]], group_dependency: Optional[GroupDependency] = None,
                 kwargs: Optional[dict] = None, noise: float = 0.0, group_size: int = 1,
                 rounding_fn: Union[Callable, str] = math.floor,
                 importance: Union[str, Importance, Callable, None] = None, dummy_input: Any = None,
                 dataset: Optional[str] = None, model: Optional[torch.nn.Module] = None) -> None:
        super().__init__(name, initial_sparsity, final_sparsity, weights)
        self.ranker = RankedStructureParameterPruner(
            name, group_type, self.final_sparsity, weights, group_dependency, kwargs, noise, group_size,
            rounding_fn, importance=importance if importance is not None else self.default_importance,
            dummy_input=dummy_input, dataset=dataset, model=model)

    @property
    def uses_channel_graph(self) -> bool:
        return self.ranker.uses_channel_graph

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        self.ranker.prune_to_target_sparsity(param, param_name, zeros_mask_dict, self.compute_target_sparsity(meta),
                                             meta["model"], step=meta.get("current_epoch"))

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: Optional[torch.nn.Module]) -> None:
        if model is None:
            raise ArgumentError(f"{self.name}: structured pruning ranks channels on the model: pass model=")
        self.ranker.prune_to_target_sparsity(param, param_name, zeros_mask_dict, target_sparsity, model)

    def state_dict(self) -> dict:
        return self.ranker.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ranker.load_state_dict(state)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, group_type={self.ranker.group_type!r}, "
                f"initial_sparsity={self.initial_sparsity}, final_sparsity={self.final_sparsity}, "
                f"importance={self.ranker.importance})")


def _alias(name: str, importance: str, criterion: str) -> type:
    """Registers Distiller's class ``name``: :class:`StructuredAGP` whose default criterion is ``importance``."""
    doc = (f"AGP over structures ranked by {criterion}: :class:`StructuredAGP` with ``importance='{importance}'`` "
           f"by default (Distiller's name).\n\n    YAML::\n\n        agp:\n"
           f"          class: {name}\n          initial_sparsity: 0.05\n          final_sparsity: 0.50\n"
           f"          group_type: Filters\n          weights: [conv1.weight, conv2.weight]\n")
    alias = type(name, (StructuredAGP,), {"default_importance": importance, "__doc__": doc, "__module__": __name__})
    return register_pruner(alias)


L1RankedStructureParameterPruner_AGP = _alias("L1RankedStructureParameterPruner_AGP", "L1", "L1 norm")
L2RankedStructureParameterPruner_AGP = _alias("L2RankedStructureParameterPruner_AGP", "L2", "L2 norm")
GradientRankedFilterPruner_AGP = _alias("GradientRankedFilterPruner_AGP", "Taylor",
                                        "the Taylor term |w * grad| (needs gradients at pruning time)")
RandomRankedFilterPruner_AGP = _alias("RandomRankedFilterPruner_AGP", "Random", "random scores drawn at each step")
BernoulliFilterPruner_AGP = _alias("BernoulliFilterPruner_AGP", "Bernoulli",
                                   "independent drops with the AGP probability (DropFilter-style with soft masks "
                                   "every mini-batch, see examples/drop_filter/)")
ActivationAPoZRankedFilterPruner_AGP = _alias("ActivationAPoZRankedFilterPruner_AGP", "APoZ",
                                              "Average Percentage of Zeros (Hu et al. 2016, Network Trimming)")
ActivationMeanRankedFilterPruner_AGP = _alias("ActivationMeanRankedFilterPruner_AGP", "MeanActivation",
                                              "mean activation (Molchanov et al. 2016)")
