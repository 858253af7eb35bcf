"""The compute cost of a model as a function of the channels it keeps, without thinning it.

A :class:`LayerCosts` lists every convolution and fully connected layer of a model's graph with its dense
MACs and the channel ids (of a :class:`~distiller.graph.DependencyGraph`) of its input and output dimensions.
Given ``keep`` (bool per channel id) each layer's MACs scale with the share of its output channels kept and,
unless it is depthwise (whose group count shrinks with its channels), with the share of its input channels
kept: exactly what :func:`distiller.summaries.model_macs` counts on the thinned model.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, cast

import torch
from torch import nn

from ..graph import DependencyGraph
from ..graph.cost import counted_layer

__all__ = ["LayerCost", "LayerCosts"]


@dataclasses.dataclass(frozen=True, eq=False)
class LayerCost:
    """One counted layer.

    Attributes:
        name: the module name.
        module: the convolution or linear layer (for a quantization wrapper, the layer it holds).
        macs: its dense MACs per sample.
        in_channels, out_channels: channel ids of its input / output dimension (None: the dimension holds no
            tracked channels and never shrinks).
        input_shape: the shape of its (first call's) input, batch of one.
    """
    name: str
    module: nn.Module
    macs: int
    in_channels: Optional[torch.Tensor]
    out_channels: Optional[torch.Tensor]
    input_shape: tuple

    @property
    def depthwise(self) -> bool:
        """A depthwise convolution: its group count shrinks with its channels, so its MACs follow the output
        channels only."""
        groups = getattr(self.module, "groups", 1)
        return groups > 1 and groups == getattr(self.module, "in_channels", None)

    @property
    def dense_widths(self) -> tuple[int, int]:
        """``(input, output)`` channel counts of the dense layer."""
        if isinstance(self.module, nn.Linear):
            return self.module.in_features, self.module.out_features
        conv = cast(nn.Conv2d, self.module)  # any convolution: they share these attributes
        return conv.in_channels, conv.out_channels

    def widths(self, keep: torch.Tensor) -> tuple[int, int]:
        """``(input, output)`` channel counts the layer keeps under ``keep``."""
        dense_in, dense_out = self.dense_widths
        kept_in = dense_in if self.in_channels is None else int(keep[self.in_channels].sum())
        kept_out = dense_out if self.out_channels is None else int(keep[self.out_channels].sum())
        return kept_in, kept_out

    def scale(self, keep: torch.Tensor) -> float:
        """The share of the layer's dense MACs left under ``keep``."""
        (dense_in, dense_out), (kept_in, kept_out) = self.dense_widths, self.widths(keep)
        return kept_out / dense_out * (1.0 if self.depthwise else kept_in / dense_in)


def _dimension(deps: DependencyGraph, name: str, role: str) -> Optional[torch.Tensor]:
    for member_name, attr in deps.members:
        if member_name == name and deps.role(member_name, attr) == role:
            return deps.channels(member_name, attr)
    return None


class LayerCosts:
    """The counted layers of ``deps``'s model and their MACs as a function of the kept channels.

    Args:
        deps: the dependency graph of the (dense) model.
    """

    def __init__(self, deps: DependencyGraph) -> None:
        graph = deps.graph
        self.layers: list[LayerCost] = []
        for name, macs in graph.module_macs().items():
            first_call = graph.module_ops(name)[0]
            module = cast(nn.Module, counted_layer(graph.op(first_call).module))
            self.layers.append(LayerCost(name, module, int(macs), _dimension(deps, name, "in"),
                                         _dimension(deps, name, "out"), tuple(graph.input_shape(first_call))))
        #: The dense model's MACs per sample.
        self.dense_macs = sum(layer.macs for layer in self.layers)

    def layer_macs(self, keep: torch.Tensor) -> torch.Tensor:
        """MACs per layer (float64, in :attr:`layers` order) when the channels in ``keep`` stay."""
        return torch.tensor([layer.macs * layer.scale(keep) for layer in self.layers], dtype=torch.float64)

    def total(self, keep: torch.Tensor) -> float:
        """The model's MACs per sample when the channels in ``keep`` stay."""
        return float(self.layer_macs(keep).sum())

    def touching(self, channels: torch.Tensor) -> torch.Tensor:
        """Bool per layer: the layer's input or output dimension holds one of ``channels``."""
        wanted = torch.zeros(int(channels.max()) + 1, dtype=torch.bool)
        wanted[channels] = True

        def holds(ids: Optional[torch.Tensor]) -> bool:
            return ids is not None and bool(wanted[ids[ids < wanted.numel()]].any())
        return torch.tensor([holds(layer.in_channels) or holds(layer.out_channels) for layer in self.layers],
                            dtype=torch.bool)
