"""One call from a dense model to a smaller one: rank channels by weight magnitude, remove the weakest.

Ranking is per dependency group (the channels that must shrink together: a residual stream, a
concatenation read by one layer, the convolutions around a depthwise one...): a channel's importance is
the sum over the group's layers of its filters' Lp norm (Li et al., "Pruning Filters for Efficient
ConvNets", ICLR 2017), each layer's norms divided by their mean so that layers of different scales count
alike. Each group then loses ``fraction`` of its channels.
"""
import collections
import dataclasses
import logging
import math
from typing import Any, Callable, Optional, Sequence

import torch

from ..errors import UnmatchedNameError
from ..graph import DependencyGraph
from ..norms import canonical_group_type
from ..summaries.compute import model_params
from ..utils import match_names
from .plan import ROLE_OF_GROUP_TYPE, ThinningError, make_plan, weight_importance
from .recipe import ThinningRecipe
from .surgery import apply_edits

msglogger = logging.getLogger(__name__)

__all__ = ["prune_and_thin", "ThinningReport"]

_RANKING_P = {"L1": 1, "L2": 2}


@dataclasses.dataclass(frozen=True)
class ThinningReport:
    """Sizes before and after :func:`prune_and_thin` and the recipe applied.

    MACs are dense, per sample (the same count as :func:`distiller.summaries.model_macs`, computed from the
    captured graph); ``channels_removed`` sums the output channels removed over all layers; ``blocked`` maps
    each reason that kept channels whole (they reach the model output, an op thinning does not know...) to
    the number of filters (output channels, over all layers) it kept.
    """
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    channels_removed: int
    recipe: ThinningRecipe
    blocked: dict = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return (f"params {self.params_before:,} -> {self.params_after:,} "
                f"({self.params_before / max(self.params_after, 1):.2f}x), MACs {self.macs_before:,} -> "
                f"{self.macs_after:,} ({self.macs_before / max(self.macs_after, 1):.2f}x), "
                f"{self.channels_removed} channels removed in {len(self.recipe)} modules")


def _check_arguments(fraction: float, group_type: str, ranking: str) -> str:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ThinningError(f"fraction must be a number in [0, 1), got {fraction!r}")
    group_type = canonical_group_type(group_type)
    if group_type not in ("Filters", "Channels"):
        raise ThinningError(f"prune_and_thin removes 'Filters' or 'Channels', not {group_type!r}")
    if ranking not in _RANKING_P:
        raise ThinningError(f"ranking must be one of {sorted(_RANKING_P)}, got {ranking!r}")
    return group_type


def _block_excluded(deps: DependencyGraph, exclude: Sequence[str], group_type: str) -> None:
    if not exclude:
        return
    try:
        matched = match_names(exclude, deps.graph.layers_topological_order(), "module")
    except UnmatchedNameError as err:
        raise ThinningError(f"exclude: {err}") from None
    excluded = {name: pattern for pattern, hits in matched.items() for name in hits}
    for name, attr in deps.members:
        if name in excluded and deps.role(name, attr) == ROLE_OF_GROUP_TYPE[group_type]:
            deps.block(deps.channels(name, attr), f"it belongs to excluded layer '{name}' ({excluded[name]})")


def _ranked_selection(deps: DependencyGraph, fraction: float,
                      importance: torch.Tensor) -> Callable[[DependencyGraph], torch.Tensor]:
    groups = [torch.tensor(group.channels) for group in deps.groups()]

    def select(current: DependencyGraph) -> torch.Tensor:
        blocked = current.blocked_mask()
        remove = torch.zeros(current.size, dtype=torch.bool)
        for members in groups:
            count = math.floor(fraction * members.numel())
            candidates = members[~blocked[members]]
            if count and candidates.numel():
                order = torch.argsort(importance[candidates], stable=True)
                remove[candidates[order[:count]]] = True
        return remove
    return select


def prune_and_thin(model: torch.nn.Module, example_inputs: Any, fraction: float, group_type: str = "Filters",
                   ranking: str = "L1", exclude: Sequence[str] = (), round_to: int = 1,
                   optimizer: Optional[torch.optim.Optimizer] = None) -> tuple[torch.nn.Module, ThinningReport]:
    """Removes the ``fraction`` least important channels of every dependency group of ``model``.

    Args:
        model: the model, shrunk in place (DataParallel wrappers are fine).
        example_inputs: a tensor or tuple of positional inputs (a batch of one is enough).
        fraction: share of each group's channels to remove, in [0, 1).
        group_type: ``'Filters'`` (rank by the producing filters) or ``'Channels'`` (by the weights of the
            layers reading the channel).
        ranking: ``'L1'`` or ``'L2'`` norm.
        exclude: module names or regular expressions whose filters (channels) are kept.
        round_to: keep output channel counts multiples of this (or whole).
        optimizer: optional; its per-parameter state is sliced with the parameters.
    Returns:
        ``(model, report)`` with a :class:`ThinningReport`.
    Raises:
        ThinningError: for invalid arguments, before any change.

    Example:
        >>> model, report = prune_and_thin(torchvision.models.resnet50(), torch.randn(1, 3, 224, 224), 0.5,
        ...                                exclude=['fc'])
        >>> print(report)   # params 25,557,032 -> ... MACs ... -> ...
    """
    group_type = _check_arguments(fraction, group_type, ranking)
    deps = DependencyGraph(model, example_inputs)
    _block_excluded(deps, exclude, group_type)
    importance = weight_importance(deps, group_type, _RANKING_P[ranking])
    plan = make_plan(deps, _ranked_selection(deps, fraction, importance), importance, round_to)
    recipe = ThinningRecipe.from_plan(plan)
    params_before, macs_before = model_params(model), deps.graph.total_macs()
    removed = sum(deps.channels(*key).numel() - keep.numel() for key, keep in plan.items()
                  if deps.role(*key) == "out")
    apply_edits(model, recipe.modules, optimizer, note_ranges=True)
    blocked: collections.Counter = collections.Counter()
    for key in deps.members:
        if deps.role(*key) == "out":
            blocked.update(deps.blocked[c] for c in deps.channels(*key).tolist() if c in deps.blocked)
    report = ThinningReport(params_before, model_params(model), macs_before, deps.graph.total_macs(), removed,
                            recipe, dict(blocked.most_common()))
    msglogger.info("prune_and_thin: %s", report)
    for reason, count in report.blocked.items():
        msglogger.info("prune_and_thin: %d filter(s) left whole because %s", count, reason)
    return model, report
