"""The prunable structures of transformer layers: attention heads and feed-forward (FFN) neurons.

A *unit* is one head or one FFN neuron. :class:`Units` says where each unit lives in a layer's tensors (the
rows and columns of each weight it owns), and from that alone derives the units' L1 importance, the pruning
masks that zero chosen units, which units are already zero, and the thinning edits that remove them.

* :data:`ATTENTION_HEADS`: head ``h`` of an attention layer owns its query, key and value rows of the input
  projection (weight and bias) and its columns of the output projection. Structured head pruning follows
  Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?" (arXiv:1905.10650), which shows
  that most heads can be removed after training with little loss; their importance is a gradient-based
  sensitivity, ours is the magnitude (L1) of the head's weights, which needs no data.
* :data:`FFN_NEURONS`: neuron ``j`` of a ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer`` owns row
  ``j`` of ``linear1`` (weight and bias) and column ``j`` of ``linear2``.

A unit whose columns of the *reader* weight (``out_proj.weight``, ``linear2.weight``) are zero contributes
nothing to the layer's output, whatever its other weights hold: removing it changes no output.

:data:`ATTENTION_HEADS` and :data:`FFN_NEURONS` are :class:`UnitFamily` objects: each dispatches on the layer's
type to one :class:`Units` layout, and other libraries' layers join through :meth:`UnitFamily.add` (the
Hugging Face adapter, :mod:`distiller.transformers.huggingface`, is added as soon as ``transformers`` is
imported), so the pruners and the thinning work on their models unchanged.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import sys
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ..errors import ArgumentError, UnmatchedNameError
from ..utils import match_names
from .attention import DistillerMultiheadAttention

__all__ = ["UnitSlice", "Units", "UnitFamily", "AttentionHeads", "FFNNeurons", "ATTENTION_HEADS", "FFN_NEURONS",
           "find_modules"]

#: Optional libraries (top-level package -> distiller adapter module) whose layer layouts join the unit
#: families once the library has been imported.
_ADAPTERS = {"transformers": "distiller.transformers.huggingface"}


@dataclasses.dataclass(frozen=True)
class UnitSlice:
    """The positions of every unit along one dimension of one tensor.

    Attributes:
        tensor: the tensor's name relative to the layer (``'in_proj.weight'``).
        dim: the dimension the units divide.
        index: ``[units, positions per unit]`` indices along ``dim``.
    """
    tensor: str
    dim: int
    index: torch.Tensor

    def per_unit(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor``'s elements grouped by unit: ``[units, elements per unit]``."""
        units = self.index.shape[0]
        picked = tensor.index_select(self.dim, self.index.reshape(-1).to(tensor.device))
        return picked.movedim(self.dim, 0).reshape(units, -1)


class Units(abc.ABC):
    """One kind of prunable structure of transformer layers.

    Attributes:
        what: a plural name for messages (``'attention heads'``).
        module_types: the layer types holding such units.
        reader: the tensor whose slices carry a unit's whole contribution to the layer's output.
    """

    what: str
    module_types: tuple[type[nn.Module], ...]
    reader: str

    @abc.abstractmethod
    def slices(self, module: nn.Module) -> list[UnitSlice]:
        """Where the units of ``module`` live, one :class:`UnitSlice` per tensor (present tensors only).

        Raises:
            ArgumentError: for a layer of a supported type in a configuration without such units.
        """

    def handles(self, module: nn.Module) -> bool:
        """Whether ``module`` is a layer holding such units."""
        return isinstance(module, self.module_types)

    def resized(self, module: nn.Module) -> None:
        """Brings the layer's own attributes (e.g. its head count) in line with its tensors after units were
        removed; layers that derive everything from their tensors need nothing."""

    def count(self, module: nn.Module) -> int:
        """The number of units of ``module``."""
        return int(self.slices(module)[0].index.shape[0])

    def importance(self, module: nn.Module) -> torch.Tensor:
        """Each unit's L1 norm over all the weights it owns (``[units]``, float64)."""
        return sum((s.per_unit(module.get_parameter(s.tensor).detach()).abs().double().sum(dim=1)
                    for s in self.slices(module)), torch.zeros(self.count(module), dtype=torch.float64))

    def masks(self, module: nn.Module, keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """0/1 masks (by tensor name relative to the layer) that zero the units where ``keep`` is False."""
        masks = {}
        for s in self.slices(module):
            param = module.get_parameter(s.tensor)
            dropped = s.index[~keep.cpu()].reshape(-1).to(param.device)
            masks[s.tensor] = torch.ones_like(param).index_fill_(s.dim, dropped, 0)
        return masks

    def zero_units(self, module: nn.Module) -> torch.Tensor:
        """Bool ``[units]``: the units whose reader slices are all zero (removable without changing outputs)."""
        reader = next(s for s in self.slices(module) if s.tensor == self.reader)
        return reader.per_unit(module.get_parameter(self.reader).detach()).eq(0).all(dim=1).cpu()

    def linear_edits(self, module: nn.Module, keep: torch.Tensor) -> dict[str, dict[str, list[int]]]:
        """The kept features of each ``nn.Linear`` of the layer when only the units ``keep`` (bool) stay, as
        :func:`distiller.thinning.surgery.apply_edits` takes them (module names relative to the layer)."""
        edits = {}
        for s in self.slices(module):
            owner, _, tensor = s.tensor.rpartition(".")
            if tensor == "weight" and isinstance(module.get_submodule(owner), nn.Linear):
                kept = sorted(s.index[keep.cpu()].reshape(-1).tolist())
                edits[owner] = {"out_features" if s.dim == 0 else "in_features": kept}
        return edits


def _tensor(module: nn.Module, path: str) -> object:
    """The attribute at ``path`` (``'in_proj.bias'``) of ``module``; None when it is unset."""
    owner, _, attr = path.rpartition(".")
    return getattr(module.get_submodule(owner), attr, None)


def _head_index(num_heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of each head in a packed ``[q; k; v]`` projection, and its columns of the output projection."""
    inner = num_heads * head_dim
    cols = torch.arange(inner).reshape(num_heads, head_dim)
    rows = torch.cat([cols + part * inner for part in range(3)], dim=1)
    return rows, cols


class AttentionHeads(Units):
    """The heads of ``nn.MultiheadAttention`` and :class:`DistillerMultiheadAttention` layers."""

    what = "attention heads"
    module_types = (nn.MultiheadAttention, DistillerMultiheadAttention)
    reader = "out_proj.weight"

    def slices(self, module: nn.Module) -> list[UnitSlice]:
        if isinstance(module, DistillerMultiheadAttention):
            packed = ("in_proj.weight", "in_proj.bias")
        else:
            if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
                raise ArgumentError(f"{type(module).__name__} with separate key/value widths, add_bias_kv or "
                                    f"add_zero_attn has no per-head layout that distiller knows")
            packed = ("in_proj_weight", "in_proj_bias")
        rows, cols = _head_index(int(module.num_heads), int(module.head_dim))
        present = [name for name in packed if _tensor(module, name) is not None]
        return [UnitSlice(name, 0, rows) for name in present] + [UnitSlice("out_proj.weight", 1, cols)]


class FFNNeurons(Units):
    """The hidden neurons of a feed-forward block: the outputs of its ``expand`` ``nn.Linear``, read by its
    ``contract`` ``nn.Linear`` (by default those of ``nn.TransformerEncoderLayer``/``DecoderLayer``).

    Args:
        module_types: the layer types holding the block.
        expand, contract: the two ``nn.Linear`` submodules' names relative to the layer.
    """

    what = "FFN neurons"

    def __init__(self, module_types: tuple[type[nn.Module], ...] = (nn.TransformerEncoderLayer,
                                                                      nn.TransformerDecoderLayer),
                 expand: str = "linear1", contract: str = "linear2") -> None:
        self.module_types = module_types
        self.expand = expand
        self.reader = f"{contract}.weight"

    def slices(self, module: nn.Module) -> list[UnitSlice]:
        expand = cast(nn.Linear, module.get_submodule(self.expand))
        index = torch.arange(expand.out_features).unsqueeze(1)
        names = [f"{self.expand}.weight"] + ([f"{self.expand}.bias"] if expand.bias is not None else [])
        return [UnitSlice(name, 0, index) for name in names] + [UnitSlice(self.reader, 1, index)]


class UnitFamily(Units):
    """One kind of unit over several layer layouts: each call goes to the member that handles the layer.

    Args:
        what: the plural name of the units.
        members: the layouts, tried in order.
    """

    def __init__(self, what: str, members: Sequence[Units]) -> None:
        self.what = what
        self.members: list[Units] = []
        self.module_types = ()
        for member in members:
            self.add(member)

    def add(self, member: Units) -> None:
        """Adds a layout (a no-op for one already present)."""
        if member not in self.members:
            self.members.append(member)
            self.module_types = self.module_types + tuple(member.module_types)

    def member(self, module: nn.Module) -> Units:
        """The layout of ``module``.

        Raises:
            ArgumentError: a layer of no supported type.
        """
        for member in self.members:
            if member.handles(module):
                return member
        raise ArgumentError(f"a {type(module).__name__} holds no {self.what}; they live in "
                            f"{', '.join(t.__name__ for t in self.module_types)} layers")

    def handles(self, module: nn.Module) -> bool:
        for package, adapter in _ADAPTERS.items():
            if package in sys.modules:
                importlib.import_module(adapter)
        return any(member.handles(module) for member in self.members)

    def slices(self, module: nn.Module) -> list[UnitSlice]:
        return self.member(module).slices(module)

    def zero_units(self, module: nn.Module) -> torch.Tensor:
        return self.member(module).zero_units(module)

    def resized(self, module: nn.Module) -> None:
        self.member(module).resized(module)


ATTENTION_HEADS = UnitFamily("attention heads", [AttentionHeads()])
FFN_NEURONS = UnitFamily("FFN neurons", [FFNNeurons()])


def find_modules(model: nn.Module, units: Units, patterns: Sequence[str], owner: str) -> list[str]:
    """The names of the layers holding ``units`` that ``patterns`` (names or regular expressions) select.

    Raises:
        ArgumentError: a pattern naming a layer of an unsupported type.
        UnmatchedNameError: a pattern selecting no supported layer (with the closest supported names).
    """
    modules = dict(model.named_modules())
    supported = [name for name, module in modules.items() if units.handles(module)]
    found: list[str] = []
    for pattern in patterns:
        if pattern in modules and pattern not in supported:
            raise ArgumentError(f"{owner}: '{pattern}' is a {type(modules[pattern]).__name__}; {units.what} live in "
                                f"{', '.join(t.__name__ for t in units.module_types)} layers", argument="modules")
        if not supported:
            raise UnmatchedNameError(pattern, modules, kind=f"layer with {units.what}")
        found += [name for name in match_names([pattern], supported, kind=f"layer with {units.what}")[pattern]
                  if name not in found]
    return found
