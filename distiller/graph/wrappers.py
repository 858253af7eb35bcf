"""Layer wrappers: modules that hold a layer (or any module) and compute it themselves, adding per-tensor work
around it, such as the quantization wrappers.

A :class:`WrapperRule` registered for a wrapper class (with
:func:`~distiller.graph.layer_rules.register_layer_rule`) makes the graph keep the wrapper whole and follow the
channels as through the module it holds, under the wrapper's name: ``('conv1', 'out_channels')`` is the held
convolution's dimension whether ``conv1`` is the float layer or its quantization wrapper, so recipes and masks
keep the layer's names. Thinning shrinks the held module and the wrapper's per-channel tensors
(:attr:`WrapperRule.weight_rows`).

The wrapper's own work must keep a channel's zeros at zero and treat all channels alike (per-tensor
quantization with a range that contains 0 does: 0.0 maps to the integer zero point and back to 0.0), so that
removing a zero channel leaves the others' outputs unchanged.

Example::

    @register_layer_rule(MyQuantConv)
    class MyQuantConvRule(WrapperRule):
        held_attr = "conv"
        weight_rows = ("w_scale",)   # one scale per output channel (or a single one)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..masking import FP_BKP_PREFIX
from .layer_rules import Layer, LayerRule, layer_rule_for

if TYPE_CHECKING:
    from .channel_flow import Flow, LayerCall

__all__ = ["WrapperRule", "unwrap", "layer_weight"]


class WrapperRule(LayerRule):
    """The rule of a module that holds another in :attr:`held_attr` and computes it (see the module docstring).

    The wrapper itself has no dimensions: thinning resolves its name to the held module (:func:`unwrap`).
    """

    #: Attribute of the wrapper holding the wrapped module.
    held_attr = "wrapped_module"
    #: Tensor attributes of the wrapper with one entry per row (first dimension) of the held layer's weight,
    #: or a single entry for the whole weight (per-channel or per-tensor quantization parameters).
    weight_rows: tuple[str, ...] = ()

    def held(self, module: Layer) -> nn.Module:
        """The module ``module`` wraps."""
        return getattr(module, self.held_attr)

    def flow(self, call: LayerCall) -> Flow:
        return call.through(self.held(call.module))

    def weight(self, module: Layer) -> torch.Tensor:
        """The real values of the held layer's weight (for zero tests and ranking); override for wrappers that
        store it otherwise (e.g. as integers)."""
        return layer_weight(self.held(module))


def unwrap(module: nn.Module) -> tuple[nn.Module, str, list[tuple[nn.Module, WrapperRule]]]:
    """The module that ``module`` computes through its wrappers (``module`` itself when it is no wrapper).

    Returns:
        ``(held module, attribute path from module to it ('' for itself), [(wrapper, its rule)] outermost
        first)``.
    """
    wrappers: list[tuple[nn.Module, WrapperRule]] = []
    path: list[str] = []
    rule = layer_rule_for(module)
    while isinstance(rule, WrapperRule):
        wrappers.append((module, rule))
        path.append(rule.held_attr)
        module = rule.held(module)
        rule = layer_rule_for(module)
    return module, ".".join(path), wrappers


def layer_weight(module: Layer) -> torch.Tensor:
    """The real values of a layer's weight, detached: a wrapper's :meth:`WrapperRule.weight`, else the
    full-precision copy that quantization-aware training trains (``float_weight``) when the layer has one,
    else its ``weight``."""
    rule = layer_rule_for(module)
    if isinstance(rule, WrapperRule):
        return rule.weight(module).detach()
    weight = getattr(module, FP_BKP_PREFIX + "weight", None)
    return (weight if weight is not None else module.weight).detach()
