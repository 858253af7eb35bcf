"""Compilation of the PT2E lowering to int8 CPU code with inductor (freezing on).

With torchao installed (``pip install 'distiller[int8]'``), :func:`compile_int8` compiles the
quantize/dequantize form of :func:`~.pt2e.to_pt2e` with torchao's x86 inductor passes registered: the
passes that torch 2.14 moved out of PyTorch into torchao (``torchao.quantization.pt2e.inductor_passes.x86``,
registered when ``torchao.quantization.pt2e.quantizer.x86_inductor_quantizer`` is imported, as torchao's
own PT2E flow does). They turn ``dequantize -> conv/linear [-> relu] -> quantize`` into oneDNN int8 kernels
on prepacked weights and fuse int8 max-pooling and concatenation, exactly as for a model converted by
``convert_pt2e``.

Without torchao, the lowering emits the oneDNN int8 kernels itself (``onednn.qconv_pointwise`` /
``qlinear_pointwise`` on prepacked weights, ReLU fused), which inductor's own x86 lowerings compile; the
remaining quantize/add/ReLU/pooling steps become C++ loops. That path computes the same integers but was
measured 2.4-3.0x slower than torch.ao's FX int8 (benchmarks/README.md), so it warns once.
"""
from __future__ import annotations

import functools
import importlib
import logging
import math
from typing import Any, Optional

import torch
from torch import fx, nn

from ...errors import MissingDependencyError
from ...graph.capture import as_input_tuple
from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .pt2e import PT2EEmitter, build_pt2e_model
from .walk import FusedActivation, QParams

__all__ = ["compile_int8", "CompiledInt8Model", "check_cpp_compiler", "torchao_fusion_passes", "OneDNNEmitter",
           "INT8_INSTALL_HINT"]

logger = logging.getLogger(__name__)

#: How to install the optional package of the fast int8 path.
INT8_INSTALL_HINT = "pip install 'distiller[int8]' (or pip install torchao)"
_TORCHAO_PASSES = "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"
#: inductor counters that torchao's passes increase once per conv/linear turned into an int8 kernel.
_FUSION_COUNTERS = ("qconv_weight_prepack_matcher_count", "qlinear_weight_prepack_matcher_count")
_QD = torch.ops.quantized_decomposed


class OneDNNEmitter(PT2EEmitter):
    """PT2E's form with conv/linear layers as oneDNN int8 kernels on prepacked weights (for inductor)."""

    float_output_layers = False  # the explicit kernels round every convolution output

    def param_layer(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper, x: fx.Node, in_qp: QParams,
                    out_qp: Optional[QParams], activation: Optional[FusedActivation]) -> fx.Node:
        assert out_qp is not None  # float_output_layers is off
        quantized = x.args[0]  # the integers of the dequantized input (see wrapper_input)
        weight, scale, zero_point, bias = self._layer_constants(name, wrapper)
        post_op, scalars = "none", list[float]()  # a redundant activation: the output's clamp applies it
        if activation is not None and not activation.redundant(out_qp):
            post_op, scalars = ("relu", []) if math.isinf(activation.upper) else ("hardtanh", [0.0, activation.upper])
        layer = wrapper.wrapped_module
        if isinstance(layer, nn.Linear):
            packed = self.graph.call_function(torch.ops.onednn.qlinear_prepack.default, (weight, None))
            value = self.graph.call_function(torch.ops.onednn.qlinear_pointwise.default, (
                quantized, in_qp.scale, in_qp.zero_point, packed, scale, zero_point, bias, out_qp.scale,
                out_qp.zero_point, torch.uint8, post_op, scalars, ""))
        else:
            geometry: tuple[Any, ...] = (list(layer.stride), list(layer.padding), list(layer.dilation), layer.groups)
            packed = self.graph.call_function(torch.ops.onednn.qconv_prepack.default, (
                weight, scale, in_qp.scale, in_qp.zero_point, *geometry, None))
            conv_args: tuple[Any, ...] = (quantized, in_qp.scale, in_qp.zero_point, packed, scale, zero_point, bias,
                                          *geometry, out_qp.scale, out_qp.zero_point, torch.uint8, post_op, scalars, "")
            value = self.graph.call_function(torch.ops.onednn.qconv_pointwise.default, conv_args)
        return self._dequantize_op(value, out_qp)


@functools.cache
def torchao_fusion_passes() -> bool:
    """Registers torchao's x86 inductor int8 fusion passes (once); False when torchao (or that module of
    it) is not installed. Importing the module also sets inductor's ``pre_grad_custom_pass`` to torchao's
    ``quant_lift_up``, as torchao's own flow does."""
    try:
        importlib.import_module(_TORCHAO_PASSES)
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("torchao"):
            raise  # torchao is there but something it needs is broken: not a missing optional package
        return False
    return True


@functools.cache
def _warn_slow_path() -> None:
    logger.warning("torchao is not installed: compiling the int8 model from explicit oneDNN kernels without "
                   "inductor's int8 fusion passes, which runs 2-3x slower than with them; for the fast path: %s",
                   INT8_INSTALL_HINT)


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
    input shapes, so both are set on every call).

    Attributes:
        lowered: the uncompiled graph, for inspection.
        fusion: ``'torchao'`` (torchao's inductor passes) or ``'onednn'`` (explicit oneDNN kernels).
        int8_layers: how many quantized conv/linear layers run as int8 kernels.
        quantized_layers: how many quantized conv/linear layers the model has.
    """

    def __init__(self, lowered: fx.GraphModule, compiled: Any, fusion: str) -> None:
        super().__init__()
        self.lowered = lowered
        self._compiled = compiled
        self.fusion = fusion
        self.int8_layers = self.quantized_layers = 0

    def forward(self, *inputs: torch.Tensor) -> Any:
        from torch._inductor import config
        with torch.no_grad(), config.patch(freezing=True):
            return self._compiled(*inputs)


def _fused_count() -> int:
    from torch._dynamo.utils import counters
    return sum(counters["inductor"][key] for key in _FUSION_COUNTERS)


def _count_targets(graph_module: fx.GraphModule, *targets: Any) -> int:
    return sum(node.op == "call_function" and node.target in targets for node in graph_module.graph.nodes)


def compile_int8(model: nn.Module, example_inputs: Any, dynamic: Optional[bool] = None) -> CompiledInt8Model:
    """Compiles a model prepared by :class:`PostTrainLinearQuantizer` (or trained by
    :class:`QuantAwareTrainRangeLinearQuantizer`, lowered as by :func:`~.pt2e.to_pt2e`) to int8 CPU code with inductor.

    Quantized conv/linear layers run as oneDNN int8 kernels (ReLU fused) with the simulated model's scales,
    zero points, integer weights and accumulator-grid biases; freezing folds and prepacks the weights. With
    torchao installed, its x86 inductor passes do the fusion (the fast path); without it, explicit oneDNN
    kernels are compiled and a warning says how to get the fast path. Compiling happens here, on
    ``example_inputs``; it needs a C++ compiler.

    Args:
        model: the simulated quantized model (not modified).
        example_inputs: an example input (tensor or tuple of tensors) on which the model is compiled.
        dynamic: passed to ``torch.compile`` (None: recompile with dynamic shapes when shapes change).
    Returns:
        a :class:`CompiledInt8Model` whose forward runs the compiled program on CPU tensors.
    Raises:
        ExportError: as :func:`~.pt2e.to_pt2e` (the message names the layer and the setting).
        MissingDependencyError: no C++ compiler is available.
    Example:
        >>> fast = compile_int8(quantized_model, torch.randn(8, 3, 224, 224))
        >>> logits = fast(images)
    """
    check_cpp_compiler()
    torchao = torchao_fusion_passes()
    if not torchao:
        _warn_slow_path()
    lowered = build_pt2e_model(model, PT2EEmitter if torchao else OneDNNEmitter)
    compiled = CompiledInt8Model(lowered, torch.compile(lowered, dynamic=dynamic), "torchao" if torchao else "onednn")
    before = _fused_count()
    compiled(*as_input_tuple(example_inputs, "cpu"))
    if torchao:
        compiled.quantized_layers = _count_targets(lowered, _QD.dequantize_per_channel.default)
        compiled.int8_layers = _fused_count() - before
    else:
        compiled.quantized_layers = compiled.int8_layers = _count_targets(
            lowered, torch.ops.onednn.qconv_pointwise.default, torch.ops.onednn.qlinear_pointwise.default)
    if compiled.int8_layers < compiled.quantized_layers:
        logger.warning("Only %d of the %d quantized conv/linear layers were fused into int8 kernels; the others "
                       "run in float between quantize/dequantize steps", compiled.int8_layers,
                       compiled.quantized_layers)
    logger.info("Compiled the quantized model to int8 with inductor (%s fusion, %d int8 conv/linear layers)",
                compiled.fusion, compiled.int8_layers)
    return compiled
