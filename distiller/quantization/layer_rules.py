"""How the channel dependency graph (structured pruning with ``group_dependency: Graph``, thinning) sees
quantized modules.

* Wrappers are thinned as the module they hold (:class:`~distiller.graph.WrapperRule`), under their own name,
  so recipes and masks keep the float model's layer names: post-training conv/linear wrappers
  (:class:`RangeLinearQuantParamLayerWrapper`, whose per-channel ``w_scale`` / ``w_zero_point`` keep the kept
  filters' rows), fake-quantized layers (:class:`RangeLinearFakeQuantWrapper`) and quantization-aware
  training's activation wrapper (:class:`FakeQuantizationWrapper`).
* Post-training quantized sums, products and concatenations move channels as the float operations do.
* The clipped activations of DoReFa, PACT and WRPN are elementwise and keep zeros.

Layers that quantization-aware training quantizes in place (a ``float_weight`` Parameter, the quantized
``weight`` buffer and its ``weight_scale`` / ``weight_zero_point``) keep their own rules; their quantization
state follows their tensors (:mod:`distiller.thinning.followers`).

Every quantization these modules add is per tensor and maps 0.0 to 0.0 (the range contains 0 and the zero point
is an integer), so a zero channel stays zero and removing it leaves the other channels' values unchanged.
"""
from __future__ import annotations

import operator

import torch

from ..graph import LayerRule, WrapperRule, register_layer_rule
from ..graph.channel_flow import Flow, LayerCall
from ..graph.layer_rules import Layer
from .clipped_linear import ClippedLinearQuantization, LearnedClippedLinearQuantization
from .range_linear.eltwise_wrappers import (RangeLinearQuantConcatWrapper, RangeLinearQuantEltwiseAddWrapper,
                                            RangeLinearQuantEltwiseMultWrapper)
from .range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .range_linear.qat import FakeQuantizationWrapper
from .range_linear.wrappers import RangeLinearFakeQuantWrapper

__all__ = ["QuantizedParamLayerRule", "FakeQuantWrapperRule", "QuantizedEltwiseRule", "ClippedActivationRule"]


@register_layer_rule(RangeLinearQuantParamLayerWrapper)
class QuantizedParamLayerRule(WrapperRule):
    """A post-training quantized conv/linear layer: its integer weights are the held layer's ``weight``, their
    scales and zero points one per filter (``per_channel_wts``) or one for the layer."""

    weight_rows = ("w_scale", "w_zero_point")

    def weight(self, module: Layer) -> torch.Tensor:
        return module.dequantized_weight()


@register_layer_rule(RangeLinearFakeQuantWrapper, FakeQuantizationWrapper)
class FakeQuantWrapperRule(WrapperRule):
    """A module run in float whose output is fake-quantized per tensor."""


@register_layer_rule(RangeLinearQuantEltwiseAddWrapper, RangeLinearQuantEltwiseMultWrapper,
                     RangeLinearQuantConcatWrapper)
class QuantizedEltwiseRule(LayerRule):
    """Post-training quantized sums, products and concatenations (of ``distiller.modules``): the inputs and the
    output are quantized per tensor around the float operation."""

    dims: dict[str, str] = {}

    def flow(self, call: LayerCall) -> Flow:
        inputs = list(call.inputs[0]) if len(call.inputs) == 1 and isinstance(call.inputs[0], (list, tuple)) \
            else list(call.inputs)
        if isinstance(call.module, RangeLinearQuantConcatWrapper):
            return call.function(torch.cat, inputs, call.module.wrapped_module.dim)
        combine = operator.add if isinstance(call.module, RangeLinearQuantEltwiseAddWrapper) else operator.mul
        result = inputs[0]
        for tensor in inputs[1:]:
            result = call.function(combine, result, tensor)
        return result


@register_layer_rule(ClippedLinearQuantization, LearnedClippedLinearQuantization)
class ClippedActivationRule(LayerRule):
    """``clip(x, 0, clip_val)`` quantized per tensor: elementwise, 0 stays 0."""

    dims: dict[str, str] = {}

    def flow(self, call: LayerCall) -> Flow:
        return call.inputs[0]
