"""The moves of greedy filter pruning: shrink one dependency group of a model by its weakest filters.

A *group* is a set of channels that must be removed together (:class:`~distiller.graph.DependencyGraph`):
the filters of one convolution with the BatchNorm and the input channels reading them, or a whole residual
stream with every convolution adding to it. Each move removes the L1-weakest filters of one group (Li et al.,
"Pruning Filters for Efficient ConvNets", ICLR 2017, with each coupled layer's norms divided by their mean,
as :func:`distiller.thinning.prune_and_thin` ranks them), within the thinning layout constraints (no layer
loses all its channels, grouped layers keep equal counts, blocked channels stay).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import math
from typing import Callable

import torch

from ..errors import first_few
from ..graph import DependencyGraph, DependencyGroup
from ..thinning import ThinningError, ThinningRecipe
from ..thinning.plan import weight_importance
from ..thinning.surgery import apply_edits

__all__ = ["GroupShrink", "group_shrinks", "minimum_recipe", "thinned_copy", "unprunable_error"]


@dataclasses.dataclass(frozen=True)
class GroupShrink:
    """One candidate move: the thinning that removes some channels of one dependency group.

    Attributes:
        layers: the layers producing the group's channels (those whose filters go), in graph order.
        channels_before: the group's channel count.
        channels_after: its count after the move.
        recipe: the thinning to apply (it also shrinks the BatchNorms and the layers reading the channels).
    """
    layers: tuple[str, ...]
    channels_before: int
    channels_after: int
    recipe: ThinningRecipe


def _producers(deps: DependencyGraph, group: DependencyGroup) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for name, attr in group.members if deps.role(name, attr) == "out"))


def _weakest(members: torch.Tensor, count: int, importance: torch.Tensor) -> Callable[[DependencyGraph], torch.Tensor]:
    """``select`` for :meth:`DependencyGraph.removable`: the ``count`` least important unblocked ``members``
    (asked again after the layout check blocks channels, so blocked ones are replaced by the next weakest)."""
    def select(deps: DependencyGraph) -> torch.Tensor:
        candidates = members[~deps.blocked_mask()[members]]
        remove = torch.zeros(deps.size, dtype=torch.bool)
        remove[candidates[torch.argsort(importance[candidates], stable=True)[:count]]] = True
        return remove
    return select


def group_shrinks(deps: DependencyGraph, step: float) -> list[GroupShrink]:
    """Every group's move: remove ``max(1, floor(step * channels))`` of its weakest filters.

    Groups with nothing removable (all channels blocked, or a single channel left in a layer) have no move.

    Args:
        deps: the current model's dependency graph (its blocked channels grow with the layout checks).
        step: the share of a group's channels one move removes, in (0, 1).
    Returns:
        the moves, in graph order of the groups.
    """
    importance = weight_importance(deps, "Filters")
    shrinks = []
    for group in deps.groups():
        if len(group.blocked) == len(group):
            continue
        members = torch.tensor(group.channels)
        count = max(1, math.floor(step * len(group)))
        keep, _ = deps.removable(_weakest(members, count, importance), importance)
        after = int(keep[members].sum())
        if after < len(group):
            shrinks.append(GroupShrink(_producers(deps, group), len(group), after,
                                       ThinningRecipe.from_plan(deps.kept_positions(keep))))
    return shrinks


def minimum_recipe(deps: DependencyGraph) -> ThinningRecipe:
    """The thinning that removes every removable channel: the smallest model the moves can reach (each layer
    keeps at least one channel, blocked channels stay). Empty when nothing can be removed."""
    importance = weight_importance(deps, "Filters")
    keep, _ = deps.removable(lambda current: current.in_use & ~current.blocked_mask(), importance)
    return ThinningRecipe.from_plan(deps.kept_positions(keep))


def thinned_copy(model: torch.nn.Module, recipe: ThinningRecipe) -> torch.nn.Module:
    """A deep copy of ``model`` thinned by ``recipe`` (``model`` is unchanged)."""
    candidate = copy.deepcopy(model)
    apply_edits(candidate, recipe.modules)
    return candidate


def unprunable_error(deps: DependencyGraph, macs: int, target_macs: float) -> ThinningError:
    """The error for a model none of whose groups can shrink any further, naming what blocks its channels."""
    reasons = collections.Counter(deps.blocked.values())
    why = first_few([f"{count} channel(s) because {reason}" for reason, count in reasons.most_common()], 3, "; ")
    return ThinningError(f"greedy filter pruning cannot shrink the model below {macs:,} MACs (target "
                         f"{math.floor(target_macs):,}): no channel group has a removable filter left"
                         + (f"; channels kept whole: {why}" if why else ""))
