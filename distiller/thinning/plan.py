"""Deciding which channels thinning removes: zero or unused channels, weight-norm ranking, the plan.

The channels themselves, their dependency groups and the layout constraints come from
:class:`~distiller.graph.DependencyGraph`; this module adds what only thinning needs: finding the
channels that are zero (``'Filters'``) or unused (``'Channels'``) wherever a layer reads them, and turning a
selection into the kept positions of every module dimension (logging or raising for what must stay).
"""
from __future__ import annotations

import collections
import logging
from typing import Callable

import torch

from ..errors import UserError
from ..graph import DependencyGraph
from ..graph.channel_flow import run_flow
from ..graph.channel_ledger import Analysis

msglogger = logging.getLogger(__name__)

__all__ = ["ThinningError", "make_plan", "dead_channels", "weight_importance", "ROLE_OF_GROUP_TYPE"]

#: The role of the module dimensions that rank (and, for zero tests, define) each structure type.
ROLE_OF_GROUP_TYPE = {"Filters": "out", "Channels": "in"}


class ThinningError(UserError, ValueError):
    """Channels that should be removed cannot be (raised with ``strict=True``), or bad thinning input."""


def _exact_zero_filters(deps: DependencyGraph) -> Callable[[str, torch.nn.Module, str], torch.Tensor]:
    def zero_filters(module_name: str, module: torch.nn.Module, attr: str) -> torch.Tensor:
        zero = deps.zero_filters(module_name, module, attr)
        bias = getattr(module, "bias", None)
        return zero if bias is None else zero & (bias.detach() == 0).cpu()
    return zero_filters


def dead_channels(deps: DependencyGraph, group_type: str, exact: bool = False) -> torch.Tensor:
    """Channels that are zero (``'Filters'``) or unused (``'Channels'``) wherever a layer reads them;
    ``'Both'``: either, per reading layer. A channel no layer reads qualifies when its filters are zero
    (``'Filters'``/``'Both'``), so that zeroed channels reaching the model output are reported.

    By default a zero filter's channel counts as zero even where its bias or norm shift makes it a constant
    (Distiller's convention: they are removed together); ``exact=True`` counts it as non-zero.

    Args:
        deps: a :class:`~distiller.graph.DependencyGraph` built with ``weight_of``.
    Returns:
        bool tensor per channel id.
    """
    analysis = deps.analysis
    if exact and group_type != "Channels":  # slots are allocated in the same order: contractions line up
        analysis = run_flow(deps.graph, Analysis(), _exact_zero_filters(deps), exact=True)
    zero_filters = _exact_zero_filters(deps) if exact else deps.zero_filters
    dead = deps.in_use.clone()
    read = torch.zeros(deps.size, dtype=torch.bool)
    for c in analysis.contractions:
        channels = deps.table[c.slots]
        read[channels] = True
        zero = torch.zeros(channels.numel(), dtype=torch.bool)
        if group_type in ("Filters", "Both") and c.input_zero is not None:
            zero |= c.input_zero
        if group_type in ("Channels", "Both"):
            zero |= deps.zero_filters(c.module_name, deps.module(c.module_name), c.attr)
        dead[channels[~zero]] = False
    if group_type == "Channels":
        return dead & read
    filters_zero = deps.in_use.clone()
    for (module_name, attr), slots in deps.analysis.usages.items():
        if deps.role(module_name, attr) == "out":
            module = deps.module(module_name)
            filters_zero[deps.table[slots][~zero_filters(module_name, module, attr)]] = False
    return dead & (read | filters_zero)


def weight_importance(deps: DependencyGraph, group_type: str, p: int = 1) -> torch.Tensor:
    """Per-channel importance: the sum over the coupled layers of each layer's Lp norms of the channel's
    filters (``'Filters'``) or input weights (``'Channels'``), each layer's norms divided by their mean.
    The weights themselves are ranked (not their masks), so soft-masked structures keep their rank."""
    def layer_norms(module_name: str, attr: str) -> torch.Tensor | None:
        weights = deps.channel_weights(module_name, attr, deps.weight(module_name))
        return None if weights is None else torch.linalg.vector_norm(weights, ord=p, dim=1)
    return deps.channel_scores(ROLE_OF_GROUP_TYPE[group_type], layer_norms)


def make_plan(deps: DependencyGraph, select: Callable[[DependencyGraph], torch.Tensor], importance: torch.Tensor,
              round_to: int = 1, strict: bool = False) -> dict[tuple[str, str], torch.Tensor]:
    """Kept positions per module dimension for the channels ``select`` picks.

    Args:
        deps: a :class:`~distiller.graph.DependencyGraph`.
        select: ``fn(deps) -> bool tensor`` per channel id: the channels to remove (re-called after channels
            get blocked by the layout check).
        importance: per-channel tensor; constraints keep the most important channels first.
        round_to: keep every layer's output channel count a multiple of this (or whole).
        strict: raise :class:`ThinningError` instead of logging when selected channels must stay.
    Returns:
        dict ``(module_name, attr) -> LongTensor`` of kept positions, for the dimensions that shrink.
    Raises:
        ThinningError: for a bad ``round_to``, or with ``strict``, naming the blocking node of the channels
            that cannot be removed.
    """
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ThinningError(f"round_to must be a positive integer, got {round_to!r}")
    keep, stuck = deps.removable(select, importance, round_to)
    _report_blocked(deps, stuck, strict)
    return deps.kept_positions(keep)


def _report_blocked(deps: DependencyGraph, stuck: torch.Tensor, strict: bool) -> None:
    if not bool(stuck.any()):
        return
    by_reason = collections.Counter(deps.blocked[c] for c in torch.nonzero(stuck).reshape(-1).tolist())
    lines = [f"{count} channel(s) left whole because {reason}" for reason, count in by_reason.most_common()]
    if strict:
        raise ThinningError("cannot remove all selected channels (strict=True): " + "; ".join(lines))
    for line in lines:
        msglogger.info("Thinning: %s", line)
