"""Lowering of a post-training-quantized model to PyTorch 2 export (PT2E) form, and its int8 compilation.

:func:`to_pt2e` writes the simulated model in the quantize/dequantize representation that
``convert_pt2e`` produces: float operations between ``quantized_decomposed.quantize_per_tensor`` /
``dequantize_per_tensor`` pairs (uint8 activations) and weights stored as int8 constants feeding
``dequantize_per_channel`` (per tensor weights become per channel with a repeated scale), all with the
scales and zero points of the simulated model, captured by ``torch.export``.

:func:`compile_int8` compiles the same walk with inductor (freezing on). torch 2.14 moved the passes that
turn ``dequantize -> conv -> quantize`` into oneDNN int8 kernels out of PyTorch into torchao; the
lowering therefore emits those kernels itself (``onednn.qconv_pointwise`` / ``qlinear_pointwise`` on
prepacked int8 weights, ReLU fused), which inductor's own x86 lowerings then compile, and inductor fuses
the remaining quantize/add/ReLU/pooling steps into C++ loops. Symmetric 8-bit activations are written as
uint8 with zero point 128 (the same integers; see :func:`~.walk.to_pytorch_qparams`), the representation
the x86 kernels take.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the quantized_decomposed ops)
from torch import fx, nn

from ...errors import MissingDependencyError
from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .onnx_qdq import QDQEmitter, _batch_of_two
from .pytorch_int8 import accumulator_grid_bias
from .walk import ExportError, QParams, cpu_model, walk_quantized_model

__all__ = ["to_pt2e", "compile_int8", "CompiledInt8Model", "build_pt2e_model", "check_cpp_compiler"]

logger = logging.getLogger(__name__)

_QD = torch.ops.quantized_decomposed


def _as_tuple(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return tuple(x.cpu() for x in inputs)


def int8_weight(wrapper: RangeLinearQuantParamLayerWrapper) -> tuple[torch.Tensor, torch.Tensor]:
    """The wrapper's weights as int8 integers and their per-output-channel float32 scales (PyTorch's
    convention ``w ~= q * scale``; a per-tensor scale is repeated for every channel)."""
    weight = wrapper.dequantized_weight().detach().double()
    distiller_scale = wrapper.w_scale.detach().double().reshape(-1)
    channels = weight.shape[0]
    if distiller_scale.numel() == 1:
        distiller_scale = distiller_scale.expand(channels)
    shape = (channels,) + (1,) * (weight.dim() - 1)
    integers = torch.round(weight * distiller_scale.reshape(shape)).clamp(-128, 127).to(torch.int8)
    return integers, (1.0 / distiller_scale).float().contiguous()


class PT2EEmitter(QDQEmitter):
    """Emits float operations between ``quantized_decomposed`` quantize/dequantize pairs (PT2E's form)."""

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
        zero_point = self._constant(f"{name}.weight_zero_point", torch.zeros(len(scales), dtype=torch.long))
        bias = accumulator_grid_bias(wrapper)
        return weight, scale, zero_point, None if bias is None else self._constant(f"{name}.bias", bias)

    def _weight(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper) -> tuple[fx.Node, Optional[fx.Node]]:
        weight, scale, zero_point, bias = self._layer_constants(name, wrapper)
        dequantized = self.graph.call_function(_QD.dequantize_per_channel.default,
                                               (weight, scale, zero_point, 0, -128, 127, torch.int8))
        return dequantized, bias

    def binary(self, name: str, kind: str, inputs: Sequence[fx.Node], out_qp: QParams, relu: bool) -> fx.Node:
        if kind == "matmul":
            raise ExportError(f"'{name}' is a quantized matmul, which the PT2E lowering does not support; exclude "
                              f"it with overrides {{{name!r}: {{bits_activations: null}}}}")
        return super().binary(name, kind, inputs, out_qp, relu)


class OneDNNEmitter(PT2EEmitter):
    """PT2E's form with conv/linear layers as oneDNN int8 kernels on prepacked weights (for inductor)."""

    def param_layer(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper, x: fx.Node, in_qp: QParams,
                    out_qp: QParams, relu: bool) -> fx.Node:
        quantized = x.args[0]  # the integers of the dequantized input (see wrapper_input)
        weight, scale, zero_point, bias = self._layer_constants(name, wrapper)
        post_op = "relu" if relu and out_qp.zero_point != 0 else "none"  # zero point 0: the clamp is the ReLU
        layer = wrapper.wrapped_module
        if isinstance(layer, nn.Linear):
            packed = self.graph.call_function(torch.ops.onednn.qlinear_prepack.default, (weight, None))
            value = self.graph.call_function(torch.ops.onednn.qlinear_pointwise.default, (
                quantized, in_qp.scale, in_qp.zero_point, packed, scale, zero_point, bias, out_qp.scale,
                out_qp.zero_point, torch.uint8, post_op, [], ""))
        else:
            geometry: tuple[Any, ...] = (list(layer.stride), list(layer.padding), list(layer.dilation), layer.groups)
            packed = self.graph.call_function(torch.ops.onednn.qconv_prepack.default, (
                weight, scale, in_qp.scale, in_qp.zero_point, *geometry, None))
            conv_args: tuple[Any, ...] = (quantized, in_qp.scale, in_qp.zero_point, packed, scale, zero_point, bias,
                                          *geometry, out_qp.scale, out_qp.zero_point, torch.uint8, post_op, [], "")
            value = self.graph.call_function(torch.ops.onednn.qconv_pointwise.default, conv_args)
        return self._dequantize_op(value, out_qp)


def _check_padding(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if (isinstance(module, RangeLinearQuantParamLayerWrapper)
                and isinstance(module.wrapped_module, nn.modules.conv._ConvNd)
                and isinstance(module.wrapped_module.padding, str)):
            raise ExportError(f"'{name}' uses padding={module.wrapped_module.padding!r}; the int8 convolution "
                              f"kernels take explicit padding sizes")


def build_pt2e_model(model: nn.Module, onednn: bool = False) -> fx.GraphModule:
    """The GraphModule that :func:`to_pt2e` exports (``onednn``: the one :func:`compile_int8` compiles)."""
    model = cpu_model(model)
    _check_padding(model)
    return walk_quantized_model(model, OneDNNEmitter if onednn else PT2EEmitter).eval()


def to_pt2e(model: nn.Module, example_inputs: Any, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """Lowers a model prepared by :class:`PostTrainLinearQuantizer` (or a range-linear QAT model after
    :meth:`~distiller.quantization.Quantizer.prepare_model`) to an exported program in PT2E's
    quantize/dequantize representation, with the simulated model's own scales and zero points.

    Args:
        model: the simulated quantized model (not modified), static activation ranges, 8-bit.
        example_inputs: an example input (tensor or tuple of tensors).
        dynamic_batch: export the batch dimension as dynamic.
    Returns:
        a ``torch.export.ExportedProgram`` (run it with ``.module()(x)``).
    Raises:
        ExportError: a layer with dynamic ranges, other than 8-bit activations/weights, asymmetric weights,
            a quantized matmul/embedding, or an untraceable model (the message names the layer).
    Example:
        >>> program = to_pt2e(quantized_model, torch.randn(1, 3, 32, 32))
        >>> logits = program.module()(images)
    """
    inputs = _as_tuple(example_inputs)
    graph_module = build_pt2e_model(model)
    shapes = tuple({0: torch.export.Dim("batch")} for _ in inputs) if dynamic_batch else None
    if dynamic_batch:
        inputs = tuple(_batch_of_two(x) for x in inputs)
    with torch.no_grad():
        return torch.export.export(graph_module, inputs, dynamic_shapes=shapes)


def check_cpp_compiler() -> str:
    """The C++ compiler inductor will use.

    Raises:
        MissingDependencyError: none is found (inductor compiles the model's kernels with it).
    """
    from torch._inductor import config
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler
    try:
        return get_cpp_compiler()
    except InvalidCxxCompiler:
        raise MissingDependencyError(
            f"compiling the int8 model needs a C++ compiler, and none of {[c for c in config.cpp.cxx if c]} "
            f"works: install one (e.g. apt-get install g++) or name it in the CXX environment variable"
        ) from None


class CompiledInt8Model(nn.Module):
    """The inductor-compiled int8 model; runs without autograd and with inductor's freezing, which makes the
    weights constants so that they are prepacked once (torch 2.14 reads ``freezing`` from the global
    inductor config when it compiles, not from ``torch.compile(options=...)``, and compiles again for new
    input shapes, so both are set on every call)."""

    def __init__(self, lowered: fx.GraphModule, compiled: Any) -> None:
        super().__init__()
        self.lowered = lowered   # the uncompiled graph (oneDNN int8 kernels), for inspection
        self._compiled = compiled

    def forward(self, *inputs: torch.Tensor) -> Any:
        from torch._inductor import config
        with torch.no_grad(), config.patch(freezing=True):
            return self._compiled(*inputs)


def compile_int8(model: nn.Module, example_inputs: Any, dynamic: Optional[bool] = None) -> CompiledInt8Model:
    """Compiles a model prepared by :class:`PostTrainLinearQuantizer` to int8 CPU code with inductor.

    Quantized conv/linear layers run as oneDNN int8 kernels (ReLU fused) with the simulated model's scales,
    zero points, integer weights and accumulator-grid biases; freezing folds and prepacks the weights.
    Compiling happens here, on ``example_inputs``.

    Args:
        model: the simulated quantized model (not modified).
        example_inputs: an example input (tensor or tuple of tensors) on which the model is compiled.
        dynamic: passed to ``torch.compile`` (None: recompile with dynamic shapes when shapes change).
    Returns:
        a module whose forward runs the compiled program on CPU tensors.
    Raises:
        ExportError: as :func:`to_pt2e`.
        MissingDependencyError: no C++ compiler is available.
    Example:
        >>> fast = compile_int8(quantized_model, torch.randn(8, 3, 224, 224))
        >>> logits = fast(images)
    """
    check_cpp_compiler()
    lowered = build_pt2e_model(model, onednn=True)
    compiled = CompiledInt8Model(lowered, torch.compile(lowered, dynamic=dynamic))
    compiled(*_as_tuple(example_inputs))
    logger.info("Compiled the quantized model to int8 with inductor")
    return compiled
