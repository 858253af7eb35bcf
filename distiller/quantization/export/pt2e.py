"""Lowering of a post-training-quantized model to PyTorch 2 export (PT2E) form.

:func:`to_pt2e` writes the simulated model in the quantize/dequantize representation that
``convert_pt2e`` produces: float operations between ``quantized_decomposed.quantize_per_tensor`` /
``dequantize_per_tensor`` pairs (uint8 activations) and weights stored as int8 constants feeding
``dequantize_per_channel`` (per tensor weights become per channel with a repeated scale), all with the
scales and zero points of the simulated model, captured by ``torch.export``. A quantized matmul of two
activations (attention) is a float matmul between dequantized inputs and a quantized output, as
``convert_pt2e`` leaves operations without an int8 kernel. Symmetric 8-bit activations
are written as uint8 with zero point 128 (the same integers; see :func:`~.walk.to_pytorch_qparams`), the
representation the x86 int8 kernels take. A ReLU or ReLU6 after a layer is applied before the layer's output
is quantized (conv -> ReLU/hardtanh -> quantize), and a convolution whose only consumer is a residual addition
passes its output to it unrounded (conv -> add(dequantized shortcut) [-> ReLU] -> quantize), the patterns of
inductor's fused int8 kernels; that skips one rounding of the simulation (at most half a step of the
convolution's output scale), which :func:`~.parity.parity_check` measures. :mod:`.inductor` compiles this
form to int8 CPU code.

The ``quantized_decomposed`` operators are registered by ``torch.ao.quantization.fx._decomposed``, the
module that torch's inductor and torchao import for the same purpose; they work on plain uint8/int8
tensors (not the deprecated quantized tensors), and no other module registers them.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the quantized_decomposed ops)
from torch import fx, nn

from ...graph.capture import as_input_tuple
from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .from_qat import post_train_equivalent
from .integers import accumulator_grid_bias, int8_weight
from .onnx_qdq import QDQEmitter, _batch_of_two
from .walk import ExportError, QParams, cpu_model, walk_quantized_model

__all__ = ["to_pt2e", "build_pt2e_model", "PT2EEmitter"]

_QD = torch.ops.quantized_decomposed


class PT2EEmitter(QDQEmitter):
    """Emits float operations between ``quantized_decomposed`` quantize/dequantize pairs (PT2E's form); a
    convolution feeding only an addition passes its float output to it, as ``X86InductorQuantizer`` annotates
    conv+add(+ReLU) for inductor's fused kernel (``onednn.qconv2d_pointwise.binary``)."""

    float_output_layers = True

    def _quantize_op(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return self.graph.call_function(_QD.quantize_per_tensor.default,
                                        (value, qparams.scale, qparams.zero_point, 0, 255, torch.uint8))

    def _dequantize_op(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return self.graph.call_function(_QD.dequantize_per_tensor.default,
                                        (value, qparams.scale, qparams.zero_point, 0, 255, torch.uint8))

    def quantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return self._dequantize_op(self._quantize_op(value, qparams), qparams)

    def wrapper_input(self, value: fx.Node, state: Optional[QParams], qparams: QParams) -> fx.Node:
        """A dequantized value with ``qparams`` is reused; anything else is quantized (also values the walk
        marks as quantized after an operation such as average pooling, which the integer simulation
        rounds back onto the grid)."""
        if value.target is _QD.dequantize_per_tensor.default and value.args[1:3] == (qparams.scale,
                                                                                       qparams.zero_point):
            return value
        return self.quantize(value, qparams)

    def _layer_constants(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper
                         ) -> tuple[fx.Node, fx.Node, fx.Node, Optional[fx.Node]]:
        """get_attr nodes of the int8 weight, its scales and zero points, and the float bias."""
        integers, scales = int8_weight(wrapper)
        weight = self._constant(f"{name}.weight_int8", integers)
        scale = self._constant(f"{name}.weight_scale", scales)
        zero_point = self._constant(f"{name}.weight_zero_point", torch.zeros(len(scales), dtype=torch.int32))
        bias = accumulator_grid_bias(wrapper)
        return weight, scale, zero_point, None if bias is None else self._constant(f"{name}.bias", bias)

    def _weight(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper) -> tuple[fx.Node, Optional[fx.Node]]:
        weight, scale, zero_point, bias = self._layer_constants(name, wrapper)
        dequantized = self.graph.call_function(_QD.dequantize_per_channel.default,
                                               (weight, scale, zero_point, 0, -128, 127, torch.int8))
        return dequantized, bias


def _check_padding(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if (isinstance(module, RangeLinearQuantParamLayerWrapper)
                and isinstance(module.wrapped_module, nn.modules.conv._ConvNd)
                and isinstance(module.wrapped_module.padding, str)):
            raise ExportError(f"'{name}' uses padding={module.wrapped_module.padding!r}; the int8 convolution "
                              f"kernels take explicit padding sizes")


def _compact_constants(graph_module: fx.GraphModule) -> None:
    """Stores the constants compactly, for a small state dict: the weights' zero points (zeros: the weights are
    symmetric) are not saved, and the other constants become views into one storage per dtype, so that
    ``torch.save`` writes a few records instead of one per tensor (about 300 bytes each, which outweighs a
    depthwise layer's int8 weights)."""
    zero_points = {str(getattr(node.args[2], "target", "")) for node in graph_module.graph.nodes
                   if node.target is _QD.dequantize_per_channel.default}
    constants: dict[torch.dtype, dict[str, torch.Tensor]] = {}
    for target in dict.fromkeys(str(node.target) for node in graph_module.graph.nodes if node.op == "get_attr"):
        owner, _, attribute = target.rpartition(".")
        if attribute in graph_module.get_submodule(owner)._buffers:
            tensor = getattr(graph_module.get_submodule(owner), attribute)
            if target in zero_points:
                graph_module.get_submodule(owner).register_buffer(attribute, tensor, persistent=False)
            else:
                constants.setdefault(tensor.dtype, {})[target] = tensor
    for by_target in constants.values():
        tensors = list(by_target.items())
        flat = torch.cat([tensor.reshape(-1) for _, tensor in tensors])
        for (target, tensor), view in zip(tensors, flat.split([t.numel() for _, t in tensors])):
            owner, _, attribute = target.rpartition(".")
            graph_module.get_submodule(owner).register_buffer(attribute, view.view(tensor.shape))


def build_pt2e_model(model: nn.Module, emitter: type[PT2EEmitter] = PT2EEmitter) -> fx.GraphModule:
    """The GraphModule that :func:`to_pt2e` exports (another ``emitter``: a variant of that form)."""
    model = cpu_model(post_train_equivalent(model))
    _check_padding(model)
    graph_module = walk_quantized_model(model, emitter).eval()
    _compact_constants(graph_module)
    return graph_module


def to_pt2e(model: nn.Module, example_inputs: Any, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """Lowers a model prepared by :class:`PostTrainLinearQuantizer` to an exported program in PT2E's
    quantize/dequantize representation, with the simulated model's own scales and zero points. A model trained by
    :class:`QuantAwareTrainRangeLinearQuantizer` is lowered through its post-training-quantized equivalent
    (:func:`~.from_qat.post_train_equivalent`: trained float weights, the activation ranges training tracked).

    Args:
        model: the simulated quantized model (not modified), static activation ranges, 8-bit.
        example_inputs: an example input (tensor or tuple of tensors).
        dynamic_batch: export the batch dimension as dynamic.
    Returns:
        a ``torch.export.ExportedProgram`` (run it with ``.module()(x)``).
    Raises:
        ExportError: a layer with dynamic ranges, other than 8-bit activations/weights, asymmetric weights,
            a quantized embedding, a QAT fake quantization that never trained, an infinite calibration range, or an
            untraceable model (the message names the layer).
    Example:
        >>> program = to_pt2e(quantized_model, torch.randn(1, 3, 32, 32))
        >>> logits = program.module()(images)
    """
    inputs = as_input_tuple(example_inputs, "cpu")
    graph_module = build_pt2e_model(model)
    shapes = tuple({0: torch.export.Dim("batch")} for _ in inputs) if dynamic_batch else None
    if dynamic_batch:
        inputs = tuple(_batch_of_two(x) for x in inputs)
    with torch.no_grad():
        return torch.export.export(graph_module, inputs, dynamic_shapes=shapes)
