"""Schedulable structured pruners of transformer layers: attention heads and FFN neurons.

Each layer loses ``floor(sparsity * units)`` of its units (at least one always stays), those with the smallest
L1 norm over the weights they own (:mod:`distiller.transformers.units`); the masks zero every row and column a
removed unit owns, so :func:`distiller.transformers.thin_transformer` can then remove the units with no change
of output. Ranking is per layer, so all layers of a stack keep the same number of units.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from ..errors import ArgumentError
from ..pruning.agp import AutomatedGradualPrunerBase
from ..pruning.base import MaskDict, Meta, ParameterPruner, WeightNames
from ..registry import register_pruner
from ..spec import Fraction, validated
from .units import ATTENTION_HEADS, FFN_NEURONS, Units, find_modules

__all__ = ["UnitRanking", "TransformerUnitPruner", "TransformerUnitPruner_AGP", "AttentionHeadPruner",
           "AttentionHeadPruner_AGP", "FFNNeuronPruner", "FFNNeuronPruner_AGP"]


class UnitRanking:
    """Per-layer L1 ranking of one kind of unit over the selected layers, and the masks it implies.

    Args:
        owner: the pruner's name (for messages).
        units: the kind of unit.
        model: the model.
        modules: layer names / regular expressions (see :func:`~distiller.transformers.units.find_modules`).
    """

    def __init__(self, owner: str, units: Units, model: nn.Module, modules: list[str]) -> None:
        self.units = units
        self.module_names = find_modules(model, units, modules, owner)
        self.param_names = [f"{name}.{s.tensor}" for name in self.module_names
                            for s in units.slices(model.get_submodule(name))]
        self._cached: Optional[tuple[Any, float, dict[str, torch.Tensor]]] = None

    def keep(self, module: nn.Module, fraction: float) -> torch.Tensor:
        """Bool ``[units]`` keeping all but the ``floor(fraction * units)`` weakest units of ``module``."""
        count = self.units.count(module)
        pruned = min(math.floor(fraction * count), count - 1)
        keep = torch.ones(count, dtype=torch.bool)
        if pruned > 0:
            keep[torch.argsort(self.units.importance(module), stable=True)[:pruned]] = False
        return keep

    def masks(self, model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
        """The masks of every targeted parameter at ``fraction`` sparsity, by parameter name."""
        masks = {}
        for name in self.module_names:
            module = model.get_submodule(name)
            for tensor, mask in self.units.masks(module, self.keep(module, fraction)).items():
                masks[f"{name}.{tensor}"] = mask
        return masks

    def set_mask(self, param_name: str, zeros_mask_dict: MaskDict, fraction: float, model: nn.Module,
                 step: Any = None) -> None:
        """Sets ``param_name``'s mask; the choice is made once per ``(step, fraction)`` for all the weights
        (recomputed on every call when ``step`` is None)."""
        cached = self._cached
        if step is None or cached is None or cached[:2] != (step, fraction):
            cached = self._cached = (step, fraction, self.masks(model, fraction))
        zeros_mask_dict[param_name].mask = cached[2][param_name]


class TransformerUnitPruner(ParameterPruner):
    """Prunes ``desired_sparsity`` of the :attr:`units` of each selected layer, once per scheduled step.

    Args:
        name: instance name.
        desired_sparsity: fraction of each layer's units to prune, in [0, 1).
        modules: layer names / regular expressions.
        model: the model (given automatically by the YAML schedule).
    """

    units: ClassVar[Units]

    @validated
    def __init__(self, name: str, desired_sparsity: Fraction, modules: WeightNames, model: nn.Module) -> None:
        super().__init__(name)
        self.desired_sparsity = desired_sparsity
        self.ranking = UnitRanking(name, self.units, model, list(modules))

    def targets(self) -> list[str]:
        return self.ranking.param_names

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        self.ranking.set_mask(param_name, zeros_mask_dict, self.desired_sparsity, meta["model"],
                              meta.get("current_epoch"))


class TransformerUnitPruner_AGP(AutomatedGradualPrunerBase):  # noqa: N801  (Distiller's naming of AGP classes)
    """AGP (Zhu & Gupta 2017, arXiv:1710.01878) over the :attr:`units` of each selected layer.

    Args:
        name: instance name.
        initial_sparsity, final_sparsity: fractions of each layer's units, in [0, 1).
        modules: layer names / regular expressions.
        model: the model (given automatically by the YAML schedule).
    """

    units: ClassVar[Units]

    @validated
    def __init__(self, name: str, initial_sparsity: Fraction, final_sparsity: Fraction, modules: WeightNames,
                 model: nn.Module) -> None:
        ranking = UnitRanking(name, self.units, model, list(modules))
        super().__init__(name, initial_sparsity, final_sparsity, ranking.param_names)
        self.ranking = ranking

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        self.ranking.set_mask(param_name, zeros_mask_dict, self.compute_target_sparsity(meta), meta["model"],
                              meta.get("current_epoch"))

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: Optional[nn.Module]) -> None:
        if model is None:
            raise ArgumentError(f"{self.name}: head and neuron ranking reads the model's layers: pass model=")
        self.ranking.set_mask(param_name, zeros_mask_dict, target_sparsity, model)


@register_pruner
class AttentionHeadPruner(TransformerUnitPruner):
    """Prunes the weakest attention heads (L1 of their q/k/v rows and output columns) of each selected layer.

    Michel et al. 2019, "Are Sixteen Heads Really Better than One?" (arXiv:1905.10650). Layers:
    ``nn.MultiheadAttention`` or :class:`~distiller.transformers.DistillerMultiheadAttention` (only the latter
    can be thinned: see :func:`~distiller.transformers.convert_attention`).

    YAML::

        head_pruner:
          class: AttentionHeadPruner
          desired_sparsity: 0.5
          modules: ['encoder\\.layers\\.\\d+\\.self_attn']
    """

    units = ATTENTION_HEADS


@register_pruner
class AttentionHeadPruner_AGP(TransformerUnitPruner_AGP):  # noqa: N801
    """AGP over attention heads: each selected layer keeps its strongest heads (L1 of their weights), the
    pruned fraction rising along AGP's cubic curve (Zhu & Gupta 2017; heads: Michel et al. 2019).

    YAML::

        head_pruner:
          class: AttentionHeadPruner_AGP
          initial_sparsity: 0.0
          final_sparsity: 0.5
          modules: ['encoder\\.layers\\.\\d+\\.self_attn']
    """

    units = ATTENTION_HEADS


@register_pruner
class FFNNeuronPruner(TransformerUnitPruner):
    """Prunes the weakest hidden neurons (L1 of their ``linear1`` row and ``linear2`` column) of the
    feed-forward block of each selected ``nn.TransformerEncoderLayer``/``DecoderLayer``.

    YAML::

        ffn_pruner:
          class: FFNNeuronPruner
          desired_sparsity: 0.5
          modules: ['encoder\\.layers\\.\\d+']
    """

    units = FFN_NEURONS


@register_pruner
class FFNNeuronPruner_AGP(TransformerUnitPruner_AGP):  # noqa: N801
    """AGP over the feed-forward neurons of each selected transformer layer (Zhu & Gupta 2017).

    YAML::

        ffn_pruner:
          class: FFNNeuronPruner_AGP
          initial_sparsity: 0.0
          final_sparsity: 0.5
          modules: ['encoder\\.layers\\.\\d+']
    """

    units = FFN_NEURONS
