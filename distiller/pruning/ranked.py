"""Ranked structure pruning: zero the least important filters, channels, rows, columns, kernels or blocks.

One pruner (:class:`RankedStructureParameterPruner`) turns an importance criterion
(:mod:`~distiller.pruning.importance`: Lp norms, Taylor, activation statistics, random...) into masks; the
Distiller classes below only choose the default criterion. ``group_dependency`` couples weights: ``'Leader'``
(Distiller's) makes every weight reuse the first weight's choice, ``'Graph'`` ranks and masks the model's
real channel dependency groups (:mod:`~distiller.pruning.dependency_masks`), so every zeroed channel can be
thinned away. The AGP form is :class:`~distiller.pruning.StructuredAGP`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Callable, Literal, Optional, Union

import torch

from ..errors import ArgumentError
from ..masking import named_scheduled_parameters
from ..norms import canonical_group_type, expand_structure_mask, structure_view
from ..registry import register_pruner
from ..utils import match_names
from ..spec import Fraction, NonNegativeReal, PositiveInt, validated
from .base import MaskDict, Meta, ParameterPruner, WeightNames
from .dependency_masks import DependencyMasks
from .importance import Importance, Structures, owning_module_name, resolve_importance

logger = logging.getLogger(__name__)

#: How structured pruners couple layers: the first listed weight decides for all ('Leader', Distiller's), or
#: whole channel dependency groups of the model's graph ('Graph').
GroupDependency = Literal["Leader", "Graph"]

ROUNDING_FUNCTIONS: dict[str, Callable] = {"floor": math.floor, "ceil": math.ceil, "round": round}


def resolve_rounding_fn(rounding_fn: Union[Callable, str]) -> Callable:
    """Accepts a callable or, from YAML, one of ``'floor'``, ``'ceil'``, ``'round'``."""
    if callable(rounding_fn):
        return rounding_fn
    try:
        return ROUNDING_FUNCTIONS[rounding_fn]
    except (KeyError, TypeError):
        raise ArgumentError(f"rounding_fn {rounding_fn!r} is neither callable nor one of "
                            f"{sorted(ROUNDING_FUNCTIONS)}") from None


class RankedStructureParameterPruner(ParameterPruner):
    """Prunes the ``desired_sparsity`` least important structures of each weight, by an importance criterion.

    The number pruned is ``rounding_fn(sparsity * n / group_size) * group_size`` (at least one structure
    always survives).

    Args:
        name: instance name.
        group_type: ``'Filters'``/``'3D'``, ``'Channels'``, ``'Rows'``, ``'Cols'``, ``'2D'``, ``'Blocks'``
            or ``'4D'`` (whole tensors ranked against each other across ``weights``).
        desired_sparsity: the fraction of structures to prune, in [0, 1).
        weights: parameter names / regular expressions.
        group_dependency: ``None``; ``'Leader'``: every weight reuses the choice made for the first weight (the
            leader); ``'Graph'``: rank and mask whole channel dependency groups, with the BatchNorm and layers
            each channel feeds (see :mod:`~distiller.pruning.dependency_masks`; ``'Filters'``/``'Channels'``).
        kwargs: extra structure arguments: ``{'block_shape': [r, d, h, w]}`` for ``'Blocks'``.
        noise: Gaussian noise (relative to the importance std) added before ranking; 0 = none.
        group_size: prune multiples of this many structures.
        rounding_fn: rounds the number of groups to prune (callable, or 'floor'/'ceil'/'round').
        logging_fn: called with a one-line summary of each mask (default: the module logger at DEBUG).
        importance: the criterion: an :class:`~distiller.pruning.importance.Importance` or a registered name
            (``'L1'``, ``'L2'``, ``'Taylor'``, ``'APoZ'``, ``'MeanActivation'``, ``'Random'``, ``'Bernoulli'``);
            defaults to the class's criterion.
        dummy_input: ``'Graph'`` only: an example input for building the graph.
        dataset: ``'Graph'`` only: a dataset name whose image shape is the example input when neither
            ``dummy_input`` nor a forward pass seen since construction gives one.
        model: the model (given automatically by the YAML schedule): criteria that hook the model (activation
            statistics) and ``'Graph'``'s input recording start at once, otherwise at the first mask.
    """

    #: Registered name of the criterion used when ``importance`` is not given.
    default_importance: Optional[str] = None

    @validated
    def __init__(self, name: str, group_type: str, desired_sparsity: Fraction, weights: WeightNames,
                 group_dependency: Optional[GroupDependency] = None,
                 kwargs: Optional[dict[str, Any]] = None, noise: NonNegativeReal = 0.0, group_size: PositiveInt = 1,
                 rounding_fn: Union[Callable, str] = math.floor, logging_fn: Optional[Callable] = None,
                 importance: Union[str, Importance, Callable, None] = None, dummy_input: Any = None,
                 dataset: Optional[str] = None,
                 model: Optional[torch.nn.Module] = None) -> None:
        super().__init__(name)
        self.group_type = canonical_group_type(group_type)
        if group_dependency == "Leader" and self.group_type == "4D":
            raise ArgumentError(f"{name}: group_dependency 'Leader' does not apply to group_type '4D'",
                                argument="group_dependency")
        kwargs = dict(kwargs or {})
        unknown = sorted(set(kwargs) - {"block_shape"})
        if unknown:
            raise ArgumentError(f"{name}: unknown kwargs {unknown}; the only structure argument is 'block_shape'",
                                argument="kwargs")
        self.block_shape = kwargs.get("block_shape")
        if self.group_type == "Blocks" and self.block_shape is None:
            raise ArgumentError(f"{name}: group_type 'Blocks' needs kwargs: {{block_shape: [1, k, h, w]}}",
                                argument="kwargs")
        if importance is None and self.default_importance is None:
            raise ArgumentError(f"{name}: pass an importance criterion (e.g. importance='L1')")
        self.importance = resolve_importance(importance if importance is not None else self.default_importance)
        problem = self.importance.check_group_type(self.group_type)
        if problem:
            raise ArgumentError(f"{name}: {problem}")
        self.desired_sparsity = desired_sparsity
        self.weights = list(weights)
        self.group_dependency = group_dependency
        self.noise = noise
        self.group_size = group_size
        self.rounding_fn = resolve_rounding_fn(rounding_fn)
        self.logging_fn = logging_fn or logger.debug
        self.dependency: Optional[DependencyMasks] = (DependencyMasks(name, self.group_type, dummy_input, dataset)
                           if group_dependency == "Graph" else None)
        self._shared_choice: Optional[tuple] = None   # (step, target, choice): shared by the weights of a step
        self._companions_of: Optional[dict] = None    # the Graph choice whose companion masks are set
        self._attached = False
        if model is not None:
            self.attach(model)

    def targets(self) -> list:
        return self.weights

    @property
    def uses_channel_graph(self) -> bool:
        return self.dependency is not None

    def attach(self, model: torch.nn.Module) -> None:
        """Prepares the criterion (e.g. activation hooks) and ``'Graph'``'s input recording (once)."""
        if not self._attached:
            self._attached = True
            self.importance.prepare(model, [owning_module_name(name) for name, _ in self._targeted_params(model)])
            if self.dependency is not None:
                self.dependency.watch(model)

    # ------------------------------------------------------------------------------------ scoring
    def _structures(self, param: torch.Tensor, param_name: str) -> Structures:
        return Structures(param, param_name, owning_module_name(param_name), self.group_type,
                          lambda t: structure_view(t, self.group_type, self.block_shape))

    def score(self, structures: Structures) -> torch.Tensor:
        """The criterion's scores of ``structures``; its user errors are prefixed with the pruner's name."""
        try:
            return self.importance(structures)
        except (ArgumentError, RuntimeError) as err:
            if str(err).startswith(f"{self.name}: "):
                raise
            raise type(err)(f"{self.name}: {err}") from None

    def structure_keep_mask(self, param: torch.Tensor, param_name: str, fraction: float,
                            model: torch.nn.Module) -> torch.Tensor:
        """Bool keep-mask over the structures of ``param`` that prunes ``fraction`` of them.

        When ``fraction`` prunes nothing, importance is not computed (so no gradients or statistics are
        needed yet, e.g. at an AGP start of 0%).
        """
        self.attach(model)
        structures = self._structures(param, param_name)
        if not self.importance.prunes(structures.count, fraction, self.group_size, self.rounding_fn):
            return torch.ones(structures.count, dtype=torch.bool, device=param.device)
        return self.importance.keep_mask(self.score(structures), fraction, self.group_size, self.rounding_fn,
                                         self.noise)

    # ------------------------------------------------------------------------------------ masking
    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict, meta: Meta) -> None:
        self.prune_to_target_sparsity(param, param_name, zeros_mask_dict, self.desired_sparsity,
                                      meta["model"], step=meta.get("current_epoch"))

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MaskDict,
                                 target_sparsity: float, model: torch.nn.Module, step: Optional[float] = None) -> None:
        """Sets ``zeros_mask_dict[param_name].mask`` so that ``target_sparsity`` of the structures are zero.

        ``step`` identifies the pruning step (the policy's ``current_epoch``): choices shared by several
        weights (``Leader``, ``Graph``, ``'4D'``) are computed once per step. Without it they are recomputed.
        """
        if self.dependency is not None:
            self._set_graph_masks(param_name, zeros_mask_dict, target_sparsity, model, step)
            return
        if self.group_type == "4D":
            keep = self._shared(step, target_sparsity, model, self._rank_layers)[param_name].reshape(1)
        elif self.group_dependency == "Leader":
            keep = self._shared(step, target_sparsity, model, self._leader_choice)
            expected = structure_view(param.detach(), self.group_type, self.block_shape).shape[0]
            if keep.numel() != expected:
                raise ArgumentError(f"{self.name}: '{param_name}' has {expected} {self.group_type} but the leader "
                                    f"'{self._targeted_params(model)[0][0]}' has {keep.numel()}; Leader "
                                    f"dependency needs weights with the same number of structures")
        else:
            keep = self.structure_keep_mask(param, param_name, target_sparsity, model)
        mask = expand_structure_mask(keep.to(param.device), param.shape, self.group_type, self.block_shape)
        zeros_mask_dict[param_name].mask = mask
        self.logging_fn(f"{self.name}: {param_name} keeps {int(keep.sum())}/{keep.numel()} {self.group_type} "
                        f"(target sparsity {target_sparsity:.3f})")

    def _set_graph_masks(self, param_name: str, zeros_mask_dict: MaskDict, target_sparsity: float,
                         model: torch.nn.Module, step: Optional[float]) -> None:
        assert self.dependency is not None  # only called with group_dependency 'Graph'
        masks = self._shared(step, target_sparsity, model, self._graph_choice)
        zeros_mask_dict[param_name].mask = masks[param_name]
        if masks is not self._companions_of:      # once per computed choice
            self._companions_of = masks
            targeted = {name for name, _ in self._targeted_params(model)}
            self.dependency.set_companion_masks(masks, targeted, zeros_mask_dict, model, zeros_mask_dict[param_name])
            self.logging_fn(f"{self.name}: {len(masks)} parameters masked with their dependency groups (target "
                            f"sparsity {target_sparsity:.3f})")

    def _graph_choice(self, target_sparsity: float, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        self.attach(model)
        targeted = self._targeted_params(model)
        ranked = sum(max(p.shape[:2]) for _, p in targeted)   # no group ranks more channels than this
        if not self.importance.prunes(ranked, target_sparsity, self.group_size, self.rounding_fn):
            return {name: torch.ones_like(param, dtype=torch.bool) for name, param in targeted}
        assert self.dependency is not None  # only called with group_dependency 'Graph'
        masks = self.dependency.masks(model, targeted, self.group_type, self.score, self.importance,
                                      target_sparsity, self.group_size, self.rounding_fn, self.noise)
        params = dict(targeted)
        return {name: mask.to(device=params[name].device, dtype=torch.bool) if name in params else mask
                for name, mask in masks.items()}

    def _shared(self, step: Optional[float], target_sparsity: float, model: torch.nn.Module,
                compute: Callable) -> Any:
        cached = self._shared_choice
        if step is not None and cached is not None and cached[:2] == (step, target_sparsity):
            return cached[2]
        choice = compute(target_sparsity, model)
        self._shared_choice = (step, target_sparsity, choice)
        return choice

    def _targeted_params(self, model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        """(name, param) of every targeted weight, in ``weights`` order (the first is the leader); a quantized
        weight's parameter is its float copy (see :mod:`distiller.masking`)."""
        params = dict(named_scheduled_parameters(model))
        names: list[str] = []
        for hits in match_names(self.weights, params).values():
            names += [n for n in hits if n not in names]
        return [(n, params[n]) for n in names]

    def _leader_choice(self, target_sparsity: float, model: torch.nn.Module) -> torch.Tensor:
        leader_name, leader = self._targeted_params(model)[0]
        return self.structure_keep_mask(leader, leader_name, target_sparsity, model)

    def _rank_layers(self, target_sparsity: float, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """'4D': ranks whole tensors against each other; returns {param_name: bool keep}."""
        self.attach(model)
        targeted = self._targeted_params(model)
        scores = torch.cat([self.score(self._structures(p, n)).reshape(1).float().to(targeted[0][1].device)
                            for n, p in targeted])
        keep = self.importance.keep_mask(scores, target_sparsity, self.group_size, self.rounding_fn, self.noise)
        return {name: keep[i] for i, (name, _) in enumerate(targeted)}

    # -------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return self.importance.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.importance.load_state_dict(dict(state))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, group_type={self.group_type!r}, "
                f"desired_sparsity={self.desired_sparsity}, weights={self.weights}, importance={self.importance})")


@register_pruner
class L1RankedStructureParameterPruner(RankedStructureParameterPruner):
    """Prunes the structures with the smallest L1 norm (Li et al. 2017, "Pruning Filters for Efficient
    ConvNets", arXiv:1608.08710).

    YAML::

        filter_pruner:
          class: L1RankedStructureParameterPruner
          group_type: Filters          # or Channels, Rows, Cols, 2D, Blocks, 4D
          desired_sparsity: 0.5
          weights: [conv1.weight, conv2.weight]
          group_size: 1                # optional: prune multiples of N filters
          # group_dependency: Leader   # optional: all weights share the first weight's choice
          # group_dependency: Graph    # optional: whole dependency groups, with their BatchNorms
          # dataset: cifar10           # Graph: example input shape when pruning before any forward pass
          # kwargs: {block_shape: [1, 4, 1, 1]}   # for group_type: Blocks
    """

    default_importance = "L1"


@register_pruner
class L2RankedStructureParameterPruner(RankedStructureParameterPruner):
    """Prunes the structures with the smallest L2 norm; arguments as :class:`L1RankedStructureParameterPruner`.

    YAML::

        channel_pruner:
          class: L2RankedStructureParameterPruner
          group_type: Channels
          desired_sparsity: 0.25
          weights: [conv1.weight, conv2.weight]
    """

    default_importance = "L2"


@register_pruner
class GradientRankedFilterPruner(RankedStructureParameterPruner):
    """Prunes the structures (usually filters) with the smallest first-order Taylor term ``sum |w * grad|``
    (Molchanov et al. 2016, "Pruning Convolutional Neural Networks for Resource Efficient Inference").

    The gradient is the one left in ``param.grad`` by the last backward pass.

    YAML::

        taylor_pruner:
          class: GradientRankedFilterPruner
          group_type: Filters
          desired_sparsity: 0.3
          weights: [conv1.weight, conv2.weight]
    """

    default_importance = "Taylor"
