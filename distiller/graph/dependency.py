"""``DependencyGraph``: the channels of a model that must be pruned or removed together, from one example input.

The model's graph is run on *label tensors* (:mod:`distiller.graph.channel_flow`): every position of every
module dimension that thinning can shrink (``('layer1.0.conv1', 'out_channels')``, ``('layer1.0.bn1',
'num_features')``, ...) gets the id of the *channel* it belongs to. One channel may span many layers: a
residual stream's channel is the same channel in every convolution adding to it and in every layer reading
it; a concatenation maps each producer's channels to a slice of its reader's; a depthwise convolution
passes channels through; a GroupNorm group is one channel. Removing a channel shrinks every dimension
position holding it, so pruning a channel means zeroing all of them.

A *dependency group* is a set of channels that share module dimensions (transitively): the unit that
structured pruning ranks, e.g. the 256 channels of a ResNet-50 stage's residual stream. Channels that cannot
be removed (they reach the model output, meet an op whose channel mapping is unknown, a class token...)
are *blocked*, each with the reason naming the op.

Example:
    >>> deps = DependencyGraph(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))
    >>> [len(g) for g in deps.groups()][:3]
    [64, 64, 64]
    >>> deps.groups()[0].members[:3]
    (('conv1', 'out_channels'), ('bn1', 'num_features'), ('layer1.0.conv1', 'in_channels'))
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Optional, Sequence, cast

import numpy
import scipy.sparse
import scipy.sparse.csgraph
import torch

from .channel_flow import run_flow
from .channel_ledger import Analysis
from .channel_plan import verified_keep
from .layer_rules import LayerRule, layer_rule_for, registered_layer_types
from .summary_graph import SummaryGraph
from .wrappers import layer_weight

Score = Callable[[str, str], Optional[torch.Tensor]]

__all__ = ["DependencyGraph", "DependencyGroup"]


@dataclasses.dataclass(frozen=True)
class DependencyGroup:
    """Channels that share module dimensions, with the module dimensions that hold them.

    Attributes:
        channels: the channel ids (see :meth:`DependencyGraph.channels`).
        members: ``(module_name, attr)`` of every module dimension holding them.
        blocked: channel id -> why it cannot be removed, for the group's blocked channels.
    """
    channels: tuple
    members: tuple
    blocked: dict

    def __len__(self) -> int:
        return len(self.channels)

    def __repr__(self) -> str:
        names = ", ".join(f"{name}.{attr}" for name, attr in self.members[:4])
        more = f", ... ({len(self.members)} in all)" if len(self.members) > 4 else ""
        return f"DependencyGroup({len(self.channels)} channels, {len(self.blocked)} blocked: {names}{more})"


class DependencyGraph:
    """The channel dependencies of ``model``, from running it once on ``example_inputs``.

    Args:
        model: the model (DataParallel wrappers are looked through; names are the inner model's).
        example_inputs: a tensor or tuple of positional inputs (a batch of one is enough).
        leaf_modules: module names or classes to keep as opaque calls when tracing (modules with a layer
            rule are leaves anyway).
        weight_of: optional ``fn(module_name, module) -> tensor or None``: the weight (or its mask) that zero
            tests look at (:meth:`zero_filters`); None stands for the layer's own weight (:meth:`weight`).
        track_zeros: with ``weight_of``, follow the zero filters through the graph, recording which inputs
            of each layer are zero (for finding removable zero channels).
    Raises:
        GraphCaptureError: when the model cannot be traced or does not run on ``example_inputs``.
    """

    def __init__(self, model: torch.nn.Module, example_inputs: Any, leaf_modules: Sequence = (),
                 weight_of: Optional[Callable[[str, torch.nn.Module], torch.Tensor]] = None,
                 track_zeros: bool = True) -> None:
        self.graph = SummaryGraph(model, example_inputs,
                                  leaf_modules=tuple(leaf_modules) + registered_layer_types())
        self.weight_of = weight_of
        self._zero_cache: dict[tuple[str, str], torch.Tensor] = {}
        tracked = self.zero_filters if weight_of is not None and track_zeros else None
        self.analysis = run_flow(self.graph, Analysis(), tracked)
        self.table = self.analysis.slots.roots_table()
        #: Number of entries of per-channel tensors (indexed by channel id; the last entry is unused).
        self.size = len(self.analysis.slots) + 1
        #: channel id -> why it cannot be removed.
        self.blocked = self.analysis.slots.blocked_roots()
        self.in_use = torch.zeros(self.size, dtype=torch.bool)
        for slots in self.analysis.usages.values():
            self.in_use[self.table[slots]] = True
        self.in_use[-1] = False
        self._groups: Optional[list[DependencyGroup]] = None

    # ------------------------------------------------------------------------------------ lookups
    @property
    def members(self) -> list[tuple[str, str]]:
        """``(module_name, attr)`` of every module dimension that holds channels, in graph order."""
        return list(self.analysis.usages)

    def channels(self, module_name: str, attr: str) -> torch.Tensor:
        """The channel id of every position of ``module_name``'s dimension ``attr`` (LongTensor)."""
        return self.table[self.analysis.usages[(module_name, attr)]]

    def module(self, module_name: str) -> torch.nn.Module:
        """The layer called ``module_name`` (one that holds channels; for a wrapper, the layer it holds)."""
        return self.analysis.modules[module_name]

    def rule(self, module_name: str) -> LayerRule:
        """The layer rule of the module called ``module_name`` (every module holding channels has one)."""
        return cast(LayerRule, layer_rule_for(self.module(module_name)))

    def role(self, module_name: str, attr: str) -> str:
        """``'out'``, ``'in'`` or ``'param'`` (see :data:`~distiller.graph.layer_rules.ROLES`)."""
        return self.rule(module_name).dims[attr]

    def channel_weights(self, module_name: str, attr: str, tensor: torch.Tensor) -> Optional[torch.Tensor]:
        """``tensor`` (shaped like the module's weight) as ``[positions of attr, elements]``, or None when
        the dimension owns no weights (a depthwise conv's input, a norm)."""
        return self.rule(module_name).channel_weights(self.module(module_name), attr, tensor)

    def weight(self, module_name: str) -> torch.Tensor:
        """The real values of the weight of the layer called ``module_name`` (detached): through a quantization
        wrapper, or the full-precision copy of quantization-aware training
        (:func:`~distiller.graph.wrappers.layer_weight`)."""
        return layer_weight(self.graph.model.get_submodule(module_name))

    def zero_filters(self, module_name: str, module: torch.nn.Module, attr: str) -> torch.Tensor:
        """Bool per position of ``attr``: ``weight_of``'s weights there are all zero (cached)."""
        key = (module_name, attr)
        if self.weight_of is None:
            raise ValueError("zero tests need the weights: build DependencyGraph(..., weight_of=...)")
        if key not in self._zero_cache:
            rule = cast(LayerRule, layer_rule_for(module))
            weight = self.weight_of(module_name, module)
            weight = self.weight(module_name) if weight is None else weight
            weights = cast(torch.Tensor, rule.channel_weights(module, attr, weight))
            self._zero_cache[key] = (weights == 0).all(dim=1).cpu()
        return self._zero_cache[key]

    # ----------------------------------------------------------------------------------- blocking
    def block(self, channels: Any, reason: str) -> None:
        """Marks ``channels`` (ids) as not removable, with ``reason`` (the first reason wins)."""
        for channel in torch.as_tensor(channels).reshape(-1).tolist():
            self.blocked.setdefault(channel, reason)

    def blocked_mask(self) -> torch.Tensor:
        """Bool per channel id: blocked."""
        mask = torch.zeros(self.size, dtype=torch.bool)
        if self.blocked:
            mask[list(self.blocked)] = True
        return mask

    # ------------------------------------------------------------------------------------- groups
    def groups(self) -> list[DependencyGroup]:
        """The dependency groups (see the module docstring), in graph order of their first member."""
        if self._groups is None:
            self._groups = self._connected_groups()
        return [DependencyGroup(group.channels, group.members, {c: self.blocked[c] for c in group.channels
                                                                if c in self.blocked})
                for group in self._groups]

    def _connected_groups(self) -> list[DependencyGroup]:
        first_member: dict[int, int] = {}
        roots = [torch.unique(self.table[slots]) for slots in self.analysis.usages.values()]
        heads = torch.cat([r[:1].expand(r.numel()) for r in roots]).numpy()
        tails = torch.cat(roots).numpy()
        graph = scipy.sparse.coo_matrix((numpy.ones(len(heads)), (heads, tails)), shape=(self.size, self.size))
        _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
        channels, members = collections.defaultdict(list), collections.defaultdict(list)
        for root in torch.nonzero(self.in_use).reshape(-1).tolist():
            channels[int(component[root])].append(root)
        for key, slots in self.analysis.usages.items():
            group = int(component[int(self.table[slots[0]])])
            first_member.setdefault(group, len(first_member))
            members[group].append(key)
        order = sorted(channels, key=first_member.__getitem__)
        return [DependencyGroup(tuple(channels[g]), tuple(members[g]), {}) for g in order]

    # ------------------------------------------------------------------------------------ scoring
    def channel_scores(self, role: str, score: Score) -> torch.Tensor:
        """Per-channel importance summed over the module dimensions of ``role``.

        Each dimension's scores are divided by their mean, so that layers of different scales count alike
        (a channel produced by three convolutions of a residual stream adds three normalized scores).

        Args:
            role: ``'out'`` (rank by the producing filters) or ``'in'`` (by the reading weights).
            score: ``fn(module_name, attr) -> 1D tensor`` per position, or None to skip the dimension.
        Returns:
            float64 tensor indexed by channel id (zero for channels no scored dimension holds).
        """
        total = torch.zeros(self.size, dtype=torch.float64)
        for (module_name, attr), slots in self.analysis.usages.items():
            if self.role(module_name, attr) != role:
                continue
            values = score(module_name, attr)
            if values is None:
                continue
            values = values.detach().double().cpu().reshape(-1)
            total.index_add_(0, self.table[slots], values / values.mean().clamp_min(1e-12))
        return total

    # ---------------------------------------------------------------------------------- selection
    def removable(self, select: Callable[[DependencyGraph], torch.Tensor], importance: torch.Tensor,
                  round_to: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The channels to keep when removing what ``select`` picks, within the layout constraints.

        Blocked channels stay; grouped layers and ``chunk`` keep equal counts per group; no layer loses all
        its channels; ``round_to`` keeps output channel counts multiples of it (or whole), keeping the most
        ``importance``-ant channels first; and the graph is re-run with the thinned shapes to prove that every
        op still sees its channels in the same order (channels of an op that fails the check are blocked,
        with the reason, and ``select`` is asked again).

        Args:
            select: ``fn(dependency_graph) -> bool tensor`` per channel id: the channels to remove.
            importance: per-channel scores (float tensor of :attr:`size`).
            round_to: a positive int.
        Returns:
            ``(keep, stuck)``: bool tensors per channel id; ``stuck``: selected but blocked.
        """
        return verified_keep(self, select, importance, round_to)

    def kept_positions(self, keep: torch.Tensor) -> dict[tuple[str, str], torch.Tensor]:
        """``{(module_name, attr): kept positions}`` for the module dimensions that lose positions under
        ``keep`` (bool per channel id)."""
        positions = {}
        for key, slots in self.analysis.usages.items():
            kept = keep[self.table[slots]]
            if not bool(kept.all()):
                positions[key] = torch.nonzero(kept).reshape(-1)
        return positions
