"""Choosing removable channels: layout constraints, then a re-run of the graph with the thinned shapes.

Used by :meth:`DependencyGraph.removable <distiller.graph.DependencyGraph.removable>`; thinning and
structured pruning both go through it, so every channel a pruner zeros is one thinning can remove.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from .channel_flow import run_flow
from .channel_ledger import Verification

__all__ = ["verified_keep"]

if TYPE_CHECKING:
    from .dependency import DependencyGraph


def _add_back(keep: torch.Tensor, candidates: torch.Tensor, importance: torch.Tensor, count: int = 1) -> bool:
    """Keeps the ``count`` most important of ``candidates`` (channels currently removed)."""
    removed = candidates[~keep[candidates]].unique()
    if removed.numel():
        order = torch.argsort(importance[removed], descending=True, stable=True)
        keep[removed[order[:count]]] = True
    return bool(removed.numel())


def _satisfy_uniform(deps: DependencyGraph, keep: torch.Tensor, importance: torch.Tensor) -> bool:
    changed = False
    for slots, block_size in deps.analysis.uniform:
        channels = deps.table[slots]
        if channels.numel() % block_size:
            changed |= _add_back(keep, channels, importance, channels.numel())
            continue
        blocks = channels.reshape(-1, block_size)
        counts = keep[blocks].sum(dim=1)
        while not bool((counts == counts.max()).all()):
            short = int(torch.argmin(counts))
            changed |= _add_back(keep, blocks[short], importance)
            counts = keep[blocks].sum(dim=1)
    return changed


def _satisfy_sizes(deps: DependencyGraph, keep: torch.Tensor, importance: torch.Tensor, round_to: int) -> bool:
    changed = False
    for (module_name, attr), slots in deps.analysis.usages.items():
        channels = deps.table[slots]
        kept = int(keep[channels].sum())
        if kept == 0:
            changed |= _add_back(keep, channels, importance)
        while round_to > 1 and deps.role(module_name, attr) == "out" and kept % round_to and kept < channels.numel():
            changed |= _add_back(keep, channels, importance)
            kept = int(keep[channels].sum())
    return changed


def _constrain(deps: DependencyGraph, keep: torch.Tensor, importance: torch.Tensor,
               round_to: int) -> torch.Tensor:
    while _satisfy_uniform(deps, keep, importance) | _satisfy_sizes(deps, keep, importance, round_to):
        pass
    return keep


def _upstream_removed(deps: DependencyGraph, op_name: str, keep: torch.Tensor) -> set[int]:
    """Removed channels recorded anywhere upstream of ``op_name`` (they may reach it through sizes)."""
    found: set[int] = set()
    seen: set[str] = set()
    stack = [op_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(deps.graph.op(name).inputs)
        for compressed, _ in deps.analysis.recorded.get(name, ()):
            found.update(c for c in torch.unique(deps.table[compressed]).tolist() if c >= 0 and not keep[c])
    return found


def verified_keep(deps: DependencyGraph, select: Callable[[DependencyGraph], torch.Tensor],
                  importance: torch.Tensor, round_to: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """See :meth:`DependencyGraph.removable <distiller.graph.DependencyGraph.removable>`."""
    while True:
        wanted = select(deps) & deps.in_use
        blocked = deps.blocked_mask()
        keep = _constrain(deps, ~(wanted & ~blocked), importance, round_to)
        keep[-1] = True
        check = run_flow(deps.graph, Verification(deps.analysis, keep[deps.table]))
        if not check.failed_op:
            return keep, wanted & blocked
        culprits = {c: reason for c, reason in check.blamed.items() if not keep[c] and c not in deps.blocked}
        if not culprits:  # the op depends on removed channels in another way (a size, an index...)
            reason = f"'{check.failed_op}' depends on them through a size or an index (thinned layout check)"
            culprits = dict.fromkeys(_upstream_removed(deps, check.failed_op, keep), reason)
        if not culprits:
            raise RuntimeError(f"thinned layout check failed at '{check.failed_op}' with no removed channel "
                               f"upstream: {check.blamed}")
        for channel, reason in culprits.items():
            deps.blocked[channel] = reason
