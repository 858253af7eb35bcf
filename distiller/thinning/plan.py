"""Deciding which channels to remove: dependency groups, zero/ranked selection, constraints, checking.

A *channel* is a root of the slot union-find (:mod:`distiller.thinning.slots`): removing it shrinks every
module dimension position whose slot has that root. :func:`make_plan` turns a selection rule into the keep
indices of every module dimension, after (1) leaving blocked channels whole, (2) satisfying the layout
constraints (equal counts per group of a grouped convolution or ``chunk``, no empty layer, ``round_to``)
and (3) re-running the graph with the thinned shapes to prove that every op still sees its channels in
the same order (channels of an op that fails the check are kept, with the reason).
"""
import collections
import logging

import numpy
import scipy.sparse
import scipy.sparse.csgraph
import torch

from .. import norms
from ..errors import UserError
from .flow import run_flow
from .ledger import Analysis, Verification

msglogger = logging.getLogger(__name__)

__all__ = ["ThinningError", "ChannelSpace", "make_plan", "OUT_ATTRS", "IN_ATTRS"]

OUT_ATTRS = ("out_channels", "out_features")
IN_ATTRS = ("in_channels", "in_features")


class ThinningError(UserError, ValueError):
    """Channels that should be removed cannot be (raised with ``strict=True``), or bad thinning input."""


def _is_depthwise(module):
    return getattr(module, "groups", 1) > 1 and module.groups == module.in_channels


def _as_4d(weight):
    return weight if weight.dim() in (2, 4) else weight.reshape(weight.shape[0], weight.shape[1], -1, 1)


def input_channel_norms(module, weight, p=1):
    """Lp norm of the weights reading each input position (tensor channel) of a conv/linear layer."""
    if weight.dim() == 2:
        return norms.channels_lp_norm(weight, p)
    per_group = weight.shape[0] // module.groups
    return torch.cat([norms.channels_lp_norm(_as_4d(w), p) for w in weight.split(per_group)])


class ChannelSpace:
    """The analysed channels of one graph: roots, usages, importance and dependency groups.

    Args:
        graph: a :class:`~distiller.graph.SummaryGraph`.
        weight_of: ``fn(module_name, module) -> tensor``: the weight to rank and test for zeros (the mask
            when the parameter has one, else the weight).
        track_zeros: follow exactly-zero channels through the graph (needed to remove zero filters).
    """

    def __init__(self, graph, weight_of, track_zeros):
        self.graph, self.weight_of = graph, weight_of
        self._zero_filter_cache = {}
        self._exact = None
        zero_filters = self._zero_filters if track_zeros else None
        self.analysis = run_flow(graph, Analysis(), zero_filters)
        self.table = self.analysis.slots.roots_table()
        self.size = len(self.analysis.slots) + 1            # root-indexed tensors; the last entry: neutral
        self.blocked = self.analysis.slots.blocked_roots()  # root -> reason
        self.in_usage = torch.zeros(self.size, dtype=torch.bool)
        for slots in self.analysis.usages.values():
            self.in_usage[self.table[slots]] = True
        self.in_usage[-1] = False

    def _exact_zero_filters(self, module_name, module):
        zero = self._zero_filters(module_name, module)
        bias = getattr(module, "bias", None)
        return zero if bias is None else zero & (bias.detach() == 0).cpu()

    def _exact_analysis(self):
        """The analysis where biases and BatchNorm shifts keep zero filters' channels alive (computed once).
        Slots are allocated in the same order, so its contractions line up with :attr:`analysis`'s."""
        if self._exact is None:
            self._exact = run_flow(self.graph, Analysis(), self._exact_zero_filters, exact=True)
        return self._exact

    def _zero_filters(self, module_name, module):
        if module_name not in self._zero_filter_cache:
            weight = self.weight_of(module_name, module)
            self._zero_filter_cache[module_name] = (weight.reshape(weight.shape[0], -1) == 0).all(dim=1).cpu()
        return self._zero_filter_cache[module_name]

    def roots(self, key):
        """Root of every position of usage ``key = (module_name, attr)``."""
        return self.table[self.analysis.usages[key]]

    def block(self, roots, reason):
        for root in torch.as_tensor(roots).reshape(-1).tolist():
            self.blocked.setdefault(root, reason)

    def blocked_mask(self):
        mask = torch.zeros(self.size, dtype=torch.bool)
        if self.blocked:
            mask[list(self.blocked)] = True
        return mask

    def dead(self, group_type, exact=False):
        """Channels that are zero (``'Filters'``) or unused (``'Channels'``) wherever a layer reads them;
        ``'Both'``: either, per reading layer. A channel no layer reads qualifies when its filters are zero
        (``'Filters'``/``'Both'``), so that zeroed channels reaching the model output are reported.

        By default a zero filter's channel counts as zero even where its bias or BatchNorm shift makes it a
        constant (Distiller's convention: they are removed together); ``exact=True`` counts it as non-zero.
        """
        analysis = self._exact_analysis() if exact and group_type != "Channels" else self.analysis
        zero_filters = self._exact_zero_filters if exact else self._zero_filters
        dead = self.in_usage.clone()
        read = torch.zeros(self.size, dtype=torch.bool)
        for c in analysis.contractions:
            roots = self.table[c.slots]
            read[roots] = True
            zero = torch.zeros(roots.numel(), dtype=torch.bool)
            if group_type in ("Filters", "Both") and c.input_zero is not None:
                zero |= c.input_zero
            if group_type in ("Channels", "Both"):
                module = self.analysis.modules[c.module_name]
                zero |= input_channel_norms(module, self.weight_of(c.module_name, module)).cpu() == 0
            dead[roots[~zero]] = False
        if group_type == "Channels":
            return dead & read
        filters_zero = self.in_usage.clone()
        for (module_name, attr), slots in self.analysis.usages.items():
            if attr in OUT_ATTRS:
                module = self.analysis.modules[module_name]
                filters_zero[self.table[slots][~zero_filters(module_name, module)]] = False
        return dead & (read | filters_zero)

    def importance(self, group_type, p=1):
        """Per-channel importance: the sum over the coupled layers of each layer's Lp norms of the channel's
        filters (``'Filters'``) or input weights (``'Channels'``), each layer's norms divided by their mean.
        The weights themselves are ranked (not their masks), so soft-masked structures keep their rank."""
        importance = torch.zeros(self.size, dtype=torch.float64)
        for (module_name, attr), slots in self.analysis.usages.items():
            module = self.analysis.modules[module_name]
            weight = module.weight.detach()
            if group_type == "Filters" and attr in OUT_ATTRS:
                layer = norms.filters_lp_norm(weight.reshape(weight.shape[0], -1), p)
            elif group_type == "Channels" and attr in IN_ATTRS and not _is_depthwise(module):
                layer = input_channel_norms(module, weight, p)
            else:
                continue
            layer = layer.detach().double().cpu()
            importance.index_add_(0, self.table[slots], layer / layer.mean().clamp_min(1e-12))
        return importance

    def groups(self):
        """Dependency groups: lists of channels (roots) sharing a module dimension, transitively."""
        heads, tails = [], []
        for slots in self.analysis.usages.values():
            roots = torch.unique(self.table[slots])
            heads.append(roots[:1].expand(roots.numel()))
            tails.append(roots)
        heads, tails = torch.cat(heads).numpy(), torch.cat(tails).numpy()
        graph = scipy.sparse.coo_matrix((numpy.ones(len(heads)), (heads, tails)), shape=(self.size, self.size))
        _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
        members = collections.defaultdict(list)
        roots = torch.nonzero(self.in_usage).reshape(-1).tolist()
        for root, group in zip(roots, component[roots].tolist()):
            members[group].append(root)
        return list(members.values())


def _add_back(keep, candidates, importance, count=1):
    """Keeps the ``count`` most important of ``candidates`` (roots currently removed)."""
    removed = candidates[~keep[candidates]].unique()
    if removed.numel():
        order = torch.argsort(importance[removed], descending=True, stable=True)
        keep[removed[order[:count]]] = True
    return bool(removed.numel())


def _satisfy_uniform(space, keep, importance):
    changed = False
    for slots, block_size in space.analysis.uniform:
        roots = space.table[slots]
        if roots.numel() % block_size:
            changed |= _add_back(keep, roots, importance, roots.numel())
            continue
        blocks = roots.reshape(-1, block_size)
        counts = keep[blocks].sum(dim=1)
        while not bool((counts == counts.max()).all()):
            short = int(torch.argmin(counts))
            changed |= _add_back(keep, blocks[short], importance)
            counts = keep[blocks].sum(dim=1)
    return changed


def _satisfy_sizes(space, keep, importance, round_to):
    changed = False
    for (_, attr), slots in space.analysis.usages.items():
        roots = space.table[slots]
        kept = int(keep[roots].sum())
        if kept == 0:
            changed |= _add_back(keep, roots, importance)
        while round_to > 1 and attr in OUT_ATTRS and kept % round_to and kept < roots.numel():
            changed |= _add_back(keep, roots, importance)
            kept = int(keep[roots].sum())
    return changed


def _constrain(space, keep, importance, round_to):
    while _satisfy_uniform(space, keep, importance) | _satisfy_sizes(space, keep, importance, round_to):
        pass
    return keep


def make_plan(space, select, importance, round_to=1, strict=False):
    """Keep indices per module dimension for the channels ``select`` picks.

    Args:
        space: a :class:`ChannelSpace`.
        select: ``fn(space) -> bool tensor`` over roots: the channels to remove (re-called after channels
            get blocked by the layout check).
        importance: per-root tensor; constraints keep the most important channels first.
        round_to: keep every layer's output channel count a multiple of this (or whole).
        strict: raise :class:`ThinningError` instead of logging when selected channels must stay.
    Returns:
        dict ``(module_name, attr) -> LongTensor`` of kept positions, for the dimensions that shrink.
    Raises:
        ThinningError: with ``strict``, naming the blocking node of the channels that cannot be removed.
    """
    if not isinstance(round_to, int) or round_to < 1:
        raise ThinningError(f"round_to must be a positive integer, got {round_to!r}")
    while True:
        wanted = select(space) & space.in_usage
        blocked = space.blocked_mask()
        keep = _constrain(space, ~(wanted & ~blocked), importance, round_to)
        keep[-1] = True
        check = run_flow(space.graph, Verification(space.analysis, keep[space.table]))
        if not check.blamed:
            break
        newly = [root for root in check.blamed if not keep[root] and root not in space.blocked]
        if not newly:
            raise ThinningError("the thinned layout check failed without a removable culprit: "
                                + "; ".join(sorted(set(check.blamed.values()))))
        for root in newly:
            space.blocked[root] = check.blamed[root]
    _report_blocked(space, wanted & blocked, strict)
    plan = {}
    for key in space.analysis.usages:
        kept = keep[space.roots(key)]
        if not bool(kept.all()):
            plan[key] = torch.nonzero(kept).reshape(-1)
    return plan


def _report_blocked(space, stuck, strict):
    if not bool(stuck.any()):
        return
    by_reason = collections.Counter(space.blocked[root] for root in torch.nonzero(stuck).reshape(-1).tolist())
    lines = [f"{count} channel(s) left whole because {reason}" for reason, count in by_reason.most_common()]
    if strict:
        raise ThinningError("cannot remove all selected channels (strict=True): " + "; ".join(lines))
    for line in lines:
        msglogger.info("Thinning: %s", line)
