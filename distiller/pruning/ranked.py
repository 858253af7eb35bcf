"""Ranked structure pruning: zero the least important filters, channels, rows, columns, kernels or blocks.

One core (:class:`RankedStructureParameterPruner`) turns a per-structure importance into a mask; each
family only says how importance is measured: Lp norms of the weights (Li et al. 2017, "Pruning Filters
for Efficient ConvNets"), the first-order Taylor term ``|w * dL/dw|`` (Molchanov et al. 2016, "Pruning
Convolutional Neural Networks for Resource Efficient Inference"), activations (``activation_ranked``),
random scores (``random_ranked``). The AGP versions in ``ranked_agp`` reuse the same core.
"""
import abc
import logging
import math

import torch

from ..errors import ArgumentError
from ..norms import (canonical_group_type, expand_structure_mask, num_structures_to_prune, ranked_structure_mask,
                     structure_view, structures_lp_norm)
from ..registry import register_pruner
from ..utils import match_names
from .base import ParameterPruner
from .magnitude import as_number, as_weights_list

logger = logging.getLogger(__name__)

ROUNDING_FUNCTIONS = {"floor": math.floor, "ceil": math.ceil, "round": round}
GROUP_DEPENDENCIES = (None, "Leader")


def resolve_rounding_fn(rounding_fn):
    """Accepts a callable or, from YAML, one of ``'floor'``, ``'ceil'``, ``'round'``."""
    if callable(rounding_fn):
        return rounding_fn
    try:
        return ROUNDING_FUNCTIONS[rounding_fn]
    except (KeyError, TypeError):
        raise ArgumentError(f"rounding_fn {rounding_fn!r} is neither callable nor one of "
                            f"{sorted(ROUNDING_FUNCTIONS)}") from None


class RankedStructureParameterPruner(ParameterPruner):
    """Base of the ranked structure pruners: prunes the ``desired_sparsity`` least important structures.

    Subclasses implement :meth:`importance`. The number pruned is
    ``rounding_fn(sparsity * n / group_size) * group_size`` (at least one structure always survives).

    Args:
        name: instance name.
        group_type: ``'Filters'``/``'3D'``, ``'Channels'``, ``'Rows'``, ``'Cols'``, ``'2D'``, ``'Blocks'``
            or ``'4D'`` (whole tensors ranked against each other across ``weights``).
        desired_sparsity: the fraction of structures to prune, in [0, 1).
        weights: parameter names / regular expressions.
        group_dependency: ``None`` or ``'Leader'``: every weight reuses the choice made for the first
            weight (the leader), e.g. convolutions whose outputs are added by a residual connection.
        kwargs: extra structure arguments: ``{'block_shape': [r, d, h, w]}`` for ``'Blocks'``.
        noise: Gaussian noise (relative to the importance std) added before ranking; 0 = none.
        group_size: prune multiples of this many structures.
        rounding_fn: rounds the number of groups to prune (callable, or 'floor'/'ceil'/'round').
        logging_fn: called with a one-line summary of each mask (default: the module logger at DEBUG).
    """

    def __init__(self, name, group_type, desired_sparsity, weights, group_dependency=None, kwargs=None,
                 noise=0.0, group_size=1, rounding_fn=math.floor, logging_fn=None):
        super().__init__(name)
        self.group_type = canonical_group_type(group_type)
        if group_dependency not in GROUP_DEPENDENCIES:
            raise ArgumentError(f"{name}: group_dependency={group_dependency!r} is not one of {GROUP_DEPENDENCIES}")
        if group_dependency == "Leader" and self.group_type == "4D":
            raise ArgumentError(f"{name}: group_dependency 'Leader' does not apply to group_type '4D'")
        kwargs = dict(kwargs or {})
        unknown = sorted(set(kwargs) - {"block_shape"})
        if unknown:
            raise ArgumentError(f"{name}: unknown kwargs {unknown}; the only structure argument is 'block_shape'")
        self.block_shape = kwargs.get("block_shape")
        if self.group_type == "Blocks" and self.block_shape is None:
            raise ArgumentError(f"{name}: group_type 'Blocks' needs kwargs: {{block_shape: [1, k, h, w]}}")
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ArgumentError(f"{name}: group_size={group_size} must be a positive integer")
        self.desired_sparsity = as_number(name, "desired_sparsity", desired_sparsity, minimum=0.0, below=1.0)
        self.weights = as_weights_list(name, weights)
        self.group_dependency = group_dependency
        self.noise = as_number(name, "noise", noise, minimum=0.0)
        self.group_size = int(group_size)
        self.rounding_fn = resolve_rounding_fn(rounding_fn)
        self.logging_fn = logging_fn or logger.debug
        self._shared_choice = None       # (step, target_sparsity, choice): Leader / '4D' choices of a step

    def targets(self):
        return self.weights

    @abc.abstractmethod
    def importance(self, param, param_name, model):
        """Returns a 1D tensor with one score per structure of ``param`` (higher = keep)."""

    def structure_keep_mask(self, param, param_name, fraction, model):
        """Bool keep-mask over the structures of ``param`` that prunes ``fraction`` of them.

        When ``fraction`` prunes nothing, importance is not computed (so no gradients or statistics are
        needed yet, e.g. at an AGP start of 0%).
        """
        count = structure_view(param.detach(), self.group_type, self.block_shape).shape[0]
        if num_structures_to_prune(count, fraction, self.group_size, self.rounding_fn) == 0:
            return torch.ones(count, dtype=torch.bool, device=param.device)
        return ranked_structure_mask(self.importance(param, param_name, model), fraction, self.group_size,
                                     self.rounding_fn, self.noise)

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        self.prune_to_target_sparsity(param, param_name, zeros_mask_dict, self.desired_sparsity,
                                      meta["model"], step=meta.get("current_epoch"))

    def prune_to_target_sparsity(self, param, param_name, zeros_mask_dict, target_sparsity, model, step=None):
        """Sets ``zeros_mask_dict[param_name].mask`` so that ``target_sparsity`` of the structures are zero.

        ``step`` identifies the pruning step (the policy's ``current_epoch``): choices shared by several
        weights (``Leader``, ``'4D'``) are computed once per step. Without it they are recomputed.
        """
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
        zeros_mask_dict[param_name].mask = mask.to(param.dtype)
        self.logging_fn(f"{self.name}: {param_name} keeps {int(keep.sum())}/{keep.numel()} {self.group_type} "
                        f"(target sparsity {target_sparsity:.3f})")

    def _shared(self, step, target_sparsity, model, compute):
        cached = self._shared_choice
        if step is not None and cached is not None and cached[:2] == (step, target_sparsity):
            return cached[2]
        choice = compute(target_sparsity, model)
        self._shared_choice = (step, target_sparsity, choice)
        return choice

    def _targeted_params(self, model):
        """(name, param) of every targeted weight, in ``weights`` order (the first is the leader)."""
        params = dict(model.named_parameters())
        names = []
        for hits in match_names(self.weights, params).values():
            names += [n for n in hits if n not in names]
        return [(n, params[n]) for n in names]

    def _leader_choice(self, target_sparsity, model):
        leader_name, leader = self._targeted_params(model)[0]
        return self.structure_keep_mask(leader, leader_name, target_sparsity, model)

    def _rank_layers(self, target_sparsity, model):
        """'4D': ranks whole tensors against each other; returns {param_name: bool keep}."""
        targeted = self._targeted_params(model)
        scores = torch.cat([self.importance(p, n, model).reshape(1).float().to(targeted[0][1].device)
                            for n, p in targeted])
        keep = ranked_structure_mask(scores, target_sparsity, self.group_size, self.rounding_fn, self.noise)
        return {name: keep[i] for i, (name, _) in enumerate(targeted)}

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, group_type={self.group_type!r}, "
                f"desired_sparsity={self.desired_sparsity}, weights={self.weights})")


class LpRankedStructureParameterPruner(RankedStructureParameterPruner):
    """Ranks structures by the Lp norm of their weights (length-normalised for '4D', to compare layers)."""

    p = 1

    def importance(self, param, param_name, model):
        return structures_lp_norm(param, self.group_type, p=self.p, length_normalized=self.group_type == "4D",
                                  block_shape=self.block_shape)


@register_pruner
class L1RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """Prunes the structures with the smallest L1 norm (Li et al. 2017, "Pruning Filters for Efficient
    ConvNets", arXiv:1608.08710).

    YAML::

        pruners:
          filter_pruner:
            class: L1RankedStructureParameterPruner
            group_type: Filters          # or Channels, Rows, Cols, 2D, Blocks, 4D
            desired_sparsity: 0.5
            weights: [layer1.0.conv1.weight, layer1.1.conv1.weight]
            group_size: 1                # optional: prune multiples of N filters
            # group_dependency: Leader   # optional: all weights share the first weight's choice
            # kwargs: {block_shape: [1, 4, 1, 1]}   # for group_type: Blocks
    """

    p = 1


@register_pruner
class L2RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """Prunes the structures with the smallest L2 norm; arguments as :class:`L1RankedStructureParameterPruner`.

    YAML::

        pruners:
          channel_pruner:
            class: L2RankedStructureParameterPruner
            group_type: Channels
            desired_sparsity: 0.25
            weights: [layer2.0.conv2.weight]
    """

    p = 2


def taylor_importance(param, group_type, block_shape=None):
    """``sum |w * dL/dw|`` per structure (Molchanov et al. 2016, arXiv:1611.06440).

    Raises:
        ValueError: when ``param.grad`` is None (no backward pass yet).
    """
    if param.grad is None:
        raise ArgumentError("gradient ranking needs param.grad: schedule the pruner after a backward pass "
                            "(e.g. a policy starting at epoch >= 1 or mini-batch pruning), not before training")
    taylor = (param.detach() * param.grad.detach()).abs()
    return structure_view(taylor, group_type, block_shape).sum(dim=1)


@register_pruner
class GradientRankedFilterPruner(RankedStructureParameterPruner):
    """Prunes the structures (usually filters) with the smallest first-order Taylor term ``|w * grad|``
    (Molchanov et al. 2016, "Pruning Convolutional Neural Networks for Resource Efficient Inference").

    The gradient is the one left in ``param.grad`` by the last backward pass.

    YAML::

        pruners:
          taylor_pruner:
            class: GradientRankedFilterPruner
            group_type: Filters
            desired_sparsity: 0.3
            weights: [layer2.0.conv1.weight]
    """

    def importance(self, param, param_name, model):
        try:
            return taylor_importance(param, self.group_type, self.block_shape)
        except ValueError as err:
            raise ArgumentError(f"{self.name}: '{param_name}': {err}") from None

