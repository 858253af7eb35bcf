"""Conversion of a post-training-quantized model to PyTorch's integer CPU kernels (x86/fbgemm, qnnpack).

The result is a ``torch.fx.GraphModule`` made of ``torch.ao.nn.quantized`` modules (conv+ReLU and
linear+ReLU fused), ``torch.ops.quantized`` adds/products/concatenations and ``quantize_per_tensor`` /
``dequantize`` where values enter or leave the integer domain: what PyTorch's own FX quantization flow
produces, but with the scales and zero points of the simulated model, so both compute the same integers
(up to rounding ties of the float requantization multipliers).
"""
from __future__ import annotations

import contextlib
import logging
import typing
import warnings
from collections.abc import Sequence
from typing import Any, Literal, Optional

import torch
from torch import fx, nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq

from ...errors import ArgumentError
from ...spec import validated
from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .walk import Emitter, ExportError, QParams, cpu_model, walk_quantized_model

__all__ = ["convert_distiller_ptq_model_to_pytorch", "Backend", "BACKENDS"]

logger = logging.getLogger(__name__)

#: A quantized engine (``x86`` and ``fbgemm`` are PyTorch's x86 engines, ``qnnpack`` its ARM/mobile one).
Backend = Literal["x86", "fbgemm", "qnnpack", "onednn"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)

_QUANTIZED_LAYERS = {  # float type -> (plain quantized module, quantized module with fused ReLU)
    nn.Conv1d: (nnq.Conv1d, nniq.ConvReLU1d), nn.Conv2d: (nnq.Conv2d, nniq.ConvReLU2d),
    nn.Conv3d: (nnq.Conv3d, nniq.ConvReLU3d), nn.Linear: (nnq.Linear, nniq.LinearReLU)}


def _quantized_weight(wrapper: RangeLinearQuantParamLayerWrapper) -> torch.Tensor:
    """The wrapper's int8 weights as a PyTorch quantized tensor (same integers, PyTorch scales)."""
    real = wrapper.dequantized_weight().detach().float()
    scales = (1.0 / wrapper.w_scale.double()).reshape(-1)
    if wrapper.w_scale.numel() > 1:
        return torch.quantize_per_channel(real, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
    return torch.quantize_per_tensor(real, float(scales), 0, torch.qint8)


def accumulator_grid_bias(wrapper: RangeLinearQuantParamLayerWrapper) -> Optional[torch.Tensor]:
    """The bias the simulated layer adds: rounded to the accumulator's grid (``input scale * weight scale``)
    and clamped to its range, as a float tensor (kernels that add a float bias then add the same value)."""
    layer = wrapper.wrapped_module
    if layer.bias is None:
        return None
    acc_scale = (wrapper.input_scales[0].double() * wrapper.w_scale.double().reshape(-1))
    q_bias = torch.round(layer.bias.detach().double() * acc_scale).clamp(*wrapper.accum_qrange)
    return (q_bias / acc_scale).float()


def _quantized_layer(wrapper: RangeLinearQuantParamLayerWrapper, out_qp: QParams, relu: bool) -> nn.Module:
    layer = wrapper.wrapped_module
    plain, fused = _QUANTIZED_LAYERS[type(layer)]
    cls = fused if relu else plain
    if isinstance(layer, nn.Linear):
        qlayer = cls(layer.in_features, layer.out_features, layer.bias is not None)
    else:
        qlayer = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    qlayer.set_weight_bias(_quantized_weight(wrapper), accumulator_grid_bias(wrapper))
    qlayer.scale, qlayer.zero_point = float(out_qp.scale), int(out_qp.zero_point)
    return qlayer


class PyTorchInt8Emitter(Emitter):
    """Emits PyTorch quantized modules and ops."""

    def quantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return self.graph.call_function(torch.quantize_per_tensor,
                                        (value, qparams.scale, qparams.zero_point, torch.quint8))

    def requantize(self, value: fx.Node, old: QParams, new: QParams) -> fx.Node:
        return self.quantize(self.dequantize(value, old), new)

    def dequantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return self.graph.call_method("dequantize", (value,))

    def param_layer(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper, x: fx.Node, in_qp: QParams,
                    out_qp: QParams, relu: bool) -> fx.Node:
        target = self.add_module(name, _quantized_layer(wrapper, out_qp, relu))
        return self.graph.call_module(target, (x,))

    def binary(self, name: str, kind: str, inputs: Sequence[fx.Node], out_qp: QParams, relu: bool) -> fx.Node:
        op = getattr(torch.ops.quantized, f"{kind}_relu" if relu else kind)
        return self.graph.call_function(op, (*inputs, out_qp.scale, out_qp.zero_point))

    def concat(self, name: str, inputs: Sequence[fx.Node], dim: int, out_qp: QParams) -> fx.Node:
        return self.graph.call_function(torch.ops.quantized.cat, (list(inputs), dim, out_qp.scale, out_qp.zero_point))


@validated
def convert_distiller_ptq_model_to_pytorch(model: nn.Module, dummy_input: Any,
                                           backend: Backend = "x86") -> fx.GraphModule:
    """Converts a model prepared by :class:`PostTrainLinearQuantizer` to PyTorch's integer kernels.

    Quantized conv/linear layers become ``torch.ao.nn.quantized`` modules (ReLU fused when it is their only
    consumer), quantized adds/products/concatenations become ``torch.ops.quantized`` calls, ReLU, max-pooling,
    average pooling (when the simulated model keeps the input range) and reshapes run on quantized
    tensors; layers left float run in float between ``dequantize`` and ``quantize_per_tensor``.
    Activations are stored as ``quint8`` (signed 8-bit ranges shifted by 128, which represents the same
    integers) and weights as ``qint8``, per tensor or per channel.

    Args:
        model: the simulated quantized model (not modified).
        dummy_input: an example input (tensor or tuple), run once through the result as a check.
        backend: quantized engine: 'x86' (default), 'fbgemm', 'qnnpack' or 'onednn'; it becomes
            ``torch.backends.quantized.engine``, which must stay set while the result runs.
    Returns:
        a ``torch.fx.GraphModule`` on CPU.
    Raises:
        ExportError: layers without an integer kernel (quantized matmul, embedding, FP8/FP16), dynamic
            ranges, bit widths other than 8 (32 for the accumulator), asymmetric weights, integer scale
            approximation, or an untraceable model.
        distiller.errors.ArgumentError: an unknown backend (checked by :func:`distiller.spec.validated`), or
            one this torch build lacks.
    Example:
        >>> int8_model = convert_distiller_ptq_model_to_pytorch(quantized_model, torch.randn(1, 3, 32, 32))
    """
    if backend not in torch.backends.quantized.supported_engines:
        raise ArgumentError(f"quantization backend {backend!r} is not available; this torch build supports "
                            f"{', '.join(e for e in torch.backends.quantized.supported_engines if e != 'none')}",
                            argument="backend")
    torch.backends.quantized.engine = backend
    converted = walk_quantized_model(cpu_model(model), PyTorchInt8Emitter).eval()
    _run_under_relaxed_determinism(converted)
    inputs = dummy_input if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    try:
        with torch.no_grad():
            converted(*[x.cpu() if isinstance(x, torch.Tensor) else x for x in inputs])
    except Exception as err:
        raise ExportError(f"the converted int8 model fails on the example input ({type(err).__name__}: {err})") from err
    logger.info("Converted the quantized model to PyTorch int8 (%s backend)", backend)
    return converted


def _run_under_relaxed_determinism(model: nn.Module) -> None:
    """Lets the int8 model run when strict deterministic algorithms are on (``--det``).

    torch.ao's quantized CPU kernels size their outputs with ``quantized_resize_cpu_``, which strict mode
    refuses because it cannot fill the new memory; every element is then written by the kernel, so the
    int8 forward pass is deterministic. During the model's forward pass strict mode is relaxed to
    warn-only for these ops, with their warning silenced, and restored afterwards.
    """
    saved: list[tuple[bool, bool, contextlib.ExitStack]] = []

    def relax(module: nn.Module, args: Any) -> None:
        quiet = contextlib.ExitStack()
        quiet.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="quantized_resize_cpu_ does not have a deterministic")
        saved.append((torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(), quiet))
        if saved[-1][0]:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def restore(module: nn.Module, args: Any, output: Any) -> None:
        enabled, warn_only, quiet = saved.pop()
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        quiet.close()

    model.register_forward_pre_hook(relax)
    model.register_forward_hook(restore, always_call=True)  # also when the forward pass raises
