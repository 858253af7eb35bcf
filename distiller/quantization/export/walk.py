"""Walks the torch.fx graph of a post-training-quantized model and re-emits it for a deployment format.

The walk tracks, for every value, whether it is quantized and with which PyTorch-convention parameters
(``x ~= (q - zero_point) * scale``; Distiller's ``(scale_d, zp_d)`` is ``scale = 1 / scale_d``,
``zero_point = -zp_d`` (+128 for signed 8-bit ranges, stored as uint8)). Wrappers become integer
operations with exactly the parameters of the simulated model; operations that keep values on their
input's grid (ReLU, max-pooling, reshapes, dropout) run on quantized values; everything else runs in
float on dequantized values. A ReLU or ReLU6 that is an operation's only consumer is applied by the operation
(:class:`FusedActivation`). An :class:`Emitter` decides what each step looks like (PT2E's quantize/dequantize
operators, oneDNN int8 kernels, or QuantizeLinear/DequantizeLinear pairs for ONNX). An emitter with
``float_output_layers`` also builds int8 layers with a float output: a convolution passes its unrounded output
into the addition that is its only consumer, as the fused conv+add(+ReLU) int8 kernels compute it, and a layer
with 8-bit weights but float activations (``bits_activations: null``; what quantization-aware training leaves
before a residual addition) runs as an int8 kernel when its input is quantized, computing what it computes.
"""
from __future__ import annotations

import abc
import copy
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import fx, nn

from ... import modules as dm
from ...graph import GraphCaptureError, trace_model
from ...errors import UserError
from ..fp8 import FP8LinearWrapper
from ..q_utils import LinearQuantMode
from ..range_linear.eltwise_wrappers import (RangeLinearQuantConcatWrapper, RangeLinearQuantEltwiseAddWrapper,
                                             RangeLinearQuantEltwiseMultWrapper)
from ..range_linear.param_wrappers import (RangeLinearEmbeddingWrapper, RangeLinearQuantMatmulWrapper,
                                           RangeLinearQuantParamLayerWrapper)
from ..range_linear.qat import FakeLinearQuantization
from ..range_linear.ptq_graph import (GRID_PRESERVING_FUNCTIONS, GRID_PRESERVING_METHODS, GRID_PRESERVING_MODULES,
                                      SAME_RANGE_AS_INPUT_MODULES, fusable_activation)
from ..range_linear.wrappers import FP16Wrapper, FPWrapper, RangeLinearFakeQuantWrapper, RangeLinearQuantWrapper

#: The attributes of the output model: submodules and constant tensors, by name.
OutputModules = dict[str, Union[nn.Module, torch.Tensor]]

__all__ = ["QParams", "FusedActivation", "Emitter", "ExportError", "walk_quantized_model"]

_SHAPE_METHODS = {"size", "dim", "numel"}
_IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_LEAF_TYPES = (RangeLinearQuantWrapper, RangeLinearEmbeddingWrapper, FP16Wrapper, FP8LinearWrapper) + tuple(
    cls for cls in vars(dm).values() if isinstance(cls, type) and issubclass(cls, nn.Module))


class ExportError(UserError, ValueError):
    """The quantized model has a layer or setting the target format cannot represent."""


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization parameters in PyTorch's convention (uint8 storage)."""
    scale: float
    zero_point: int


@dataclass(frozen=True)
class FusedActivation:
    """A ReLU (``upper`` infinite) or ReLU6 (``upper`` 6) that the operation before it applies."""
    upper: float = math.inf

    def redundant(self, qparams: QParams) -> bool:
        """Whether quantizing with ``qparams`` already clamps at 0 and at ``upper`` (uint8 storage)."""
        return qparams.zero_point == 0 and 255 * qparams.scale <= self.upper * (1 + 1e-6)

    def emit(self, graph: fx.Graph, value: fx.Node) -> fx.Node:
        """``value`` through the activation, as a float operation of ``graph``."""
        if math.isinf(self.upper):
            return graph.call_function(F.relu, (value,))
        return graph.call_function(F.hardtanh, (value, 0.0, self.upper))


def to_pytorch_qparams(scale_d: Union[float, torch.Tensor], zero_point_d: Union[float, torch.Tensor],
                       mode: LinearQuantMode) -> QParams:
    """PyTorch-convention uint8 parameters of Distiller's ``(scale, zero_point)`` in ``mode``."""
    offset = 0 if mode == LinearQuantMode.ASYMMETRIC_UNSIGNED else 128
    return QParams(1.0 / float(scale_d), int(round(-float(zero_point_d))) + offset)


class Emitter(abc.ABC):
    """Builds the output graph for one deployment format; every method returns the new fx node."""

    #: Whether int8 layers may have a float output (``out_qp`` None): a convolution feeding only an addition
    #: passes its unrounded output to it, a weights-only quantized layer with a quantized input is an int8 layer.
    float_output_layers = False

    def __init__(self, graph: fx.Graph, modules: OutputModules) -> None:
        self.graph = graph        # the fx.Graph being built
        self.modules = modules    # name -> module of the output model

    def add_module(self, name: str, module: nn.Module) -> str:
        """Adds ``module`` to the output model under ``name``; returns the name."""
        self.modules[name] = module
        return name

    @abc.abstractmethod
    def quantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        """A float value quantized with ``qparams``."""

    @abc.abstractmethod
    def requantize(self, value: fx.Node, old: QParams, new: QParams) -> fx.Node:
        """A quantized value moved from ``old`` to ``new`` parameters."""

    @abc.abstractmethod
    def dequantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        """The float value of a quantized one."""

    def wrapper_input(self, value: fx.Node, state: Optional[QParams], qparams: QParams) -> fx.Node:
        """The input of an integer operation: ``value`` (quantized with ``state`` or float) as ``qparams``."""
        if state is None:
            return self.quantize(value, qparams)
        return value if state == qparams else self.requantize(value, state, qparams)

    @abc.abstractmethod
    def param_layer(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper, x: fx.Node, in_qp: QParams,
                    out_qp: Optional[QParams], activation: Optional[FusedActivation]) -> fx.Node:
        """Conv/Linear from a quantized input; ``activation``: the layer applies it; ``out_qp`` None: a float
        output (only asked of emitters that set ``float_output_layers``)."""

    @abc.abstractmethod
    def binary(self, name: str, kind: str, inputs: Sequence[fx.Node], out_qp: QParams,
               activation: Optional[FusedActivation]) -> fx.Node:
        """``kind`` in ('add', 'mul', 'matmul') of quantized inputs (and of a float convolution output, see
        ``float_output_layers``)."""

    @abc.abstractmethod
    def concat(self, name: str, inputs: Sequence[fx.Node], dim: int, out_qp: QParams) -> fx.Node:
        """Concatenation of quantized inputs."""


def _check_static(name: str, wrapper: RangeLinearQuantWrapper) -> None:
    if not wrapper.preset_act_stats:
        raise ExportError(f"'{name}' uses dynamic activation ranges; integer deployment needs static ranges: "
                          f"quantize with calibration statistics (model_activation_stats / --qe-stats-file)")
    if wrapper.num_bits_acts != 8:
        raise ExportError(f"'{name}' has {wrapper.num_bits_acts}-bit activations; integer kernels are 8-bit")
    if wrapper.scale_approx_mult_bits is not None:
        raise ExportError(f"'{name}' approximates scales with integer multipliers (scale_approx_mult_bits); the "
                          f"deployment kernels requantize with float scales, so results would differ")
    degenerate = [what for what, scale in (("output", wrapper.output_scale),
                                           *((f"input {i}", s) for i, s in enumerate(wrapper.input_scales)))
                  if not 0 < float(scale) < math.inf]
    if degenerate:
        raise ExportError(f"'{name}' has an infinite or NaN calibration range for its {', '.join(degenerate)} (the "
                          f"float model overflows there; its quantization scale is {float(wrapper.output_scale):g}): "
                          f"integer deployment needs finite ranges")
    other = sorted(i for i, s in wrapper.input_settings.items()
                   if s.num_bits != 8 or s.mode != wrapper.mode.activations)
    if other:
        raise ExportError(f"'{name}' quantizes input(s) {other} with other bits or mode than its activations "
                          f"(input_overrides); integer kernels take every input in the 8-bit activation format")


def _check_param_layer(name: str, wrapper: RangeLinearQuantParamLayerWrapper) -> None:
    _check_static(name, wrapper)
    if wrapper.num_bits_params != 8 or wrapper.num_bits_accum != 32:
        raise ExportError(f"'{name}' uses {wrapper.num_bits_params}-bit weights / {wrapper.num_bits_accum}-bit "
                          f"accumulator; integer kernels use 8-bit weights and a 32-bit accumulator")
    if wrapper.mode.weights not in (LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED):
        raise ExportError(f"'{name}' has {wrapper.mode.weights.name} weights; integer kernels take symmetric int8 "
                          f"weights (use mode {{activations: ..., weights: SYMMETRIC}})")
    conv = wrapper.wrapped_module
    if isinstance(conv, nn.modules.conv._ConvNd) and conv.padding_mode != "zeros":
        raise ExportError(f"'{name}' uses padding_mode={conv.padding_mode!r}; only 'zeros' is supported")


def _no_fused_relu(name: str, wrapper: RangeLinearQuantWrapper, kind: str) -> None:
    if wrapper.relu_fused:
        raise ExportError(f"'{name}' applies the ReLU after it (make_identity), which integer {kind} kernels cannot "
                          f"fuse; remove make_identity from that ReLU")


def _input_qparams(wrapper: RangeLinearQuantWrapper, index: int) -> QParams:
    return to_pytorch_qparams(wrapper.input_scales[index], wrapper.input_zero_points[index], wrapper.mode.activations)


def _unsupported(name: str, module: nn.Module) -> ExportError:
    fix = ("bits_weights: null" if isinstance(module, RangeLinearEmbeddingWrapper)
           else "bits_activations: null, bits_weights: null")
    return ExportError(f"'{name}' ({type(module).__name__}) has no integer kernel in this format; exclude it from "
                       f"quantization with overrides {{{name!r}: {{{fix}}}}}")


def _check_not_qat(modules: dict[str, nn.Module]) -> None:
    """Quantization-aware training's fake quantization is not what the walk reads (the deployment entry points
    convert a QAT model first): without this check a QAT model would be copied as a float model, silently."""
    name = next((name for name, module in modules.items() if isinstance(module, FakeLinearQuantization)), None)
    if name is not None:
        raise ExportError(f"'{name}' is quantization-aware training's fake quantization, which the walk does not "
                          f"read; lower the model with to_pt2e, compile_int8 or export_onnx_qdq, which convert it "
                          f"(from_qat.post_train_equivalent), or walk post_train_equivalent(model)")


class _Walker:
    def __init__(self, model: nn.Module, emitter_cls: type[Emitter]) -> None:
        self.sim = model
        try:
            self.gm = trace_model(model, leaf_modules=_LEAF_TYPES)
        except GraphCaptureError as err:
            raise ExportError(f"integer deployment needs a model that torch.fx can trace: {err}") from None
        self.sim_modules = dict(model.named_modules())
        _check_not_qat(self.sim_modules)
        self.graph = fx.Graph()
        self.emitter = emitter_cls(self.graph, {})
        self.env: dict[fx.Node, fx.Node] = {}  # node of the traced model -> node of the output graph
        self.state: dict[fx.Node, Optional[QParams]] = {}  # its quantization parameters (None: float)
        self.skip: set[fx.Node] = set()
        self.unrounded: set[fx.Node] = set()  # convolution outputs that their addition takes unrounded
        self.adds_with_conv: set[fx.Node] = set()  # additions that take one of them

    def arg(self, value: Any, want_float: bool = True) -> Any:
        """New-graph counterpart of an argument; quantized values are dequantized if ``want_float``."""
        def convert(node: fx.Node) -> fx.Node:
            new, qp = self.env[node], self.state.get(node)
            return self.emitter.dequantize(new, qp) if (qp is not None and want_float) else new
        return fx.map_arg(value, convert)

    def is_identity(self, node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(self.sim_modules[str(node.target)], _IDENTITIES)

    def _only_consumer(self, node: fx.Node) -> Optional[fx.Node]:
        """The node that is ``node``'s only consumer, looking through identities, or None."""
        while len(node.users) == 1:
            (user,) = node.users
            if not self.is_identity(user):
                return user
            node = user
        return None

    def activation_follows(self, node: fx.Node, out_qp: QParams) -> Optional[tuple[fx.Node, FusedActivation]]:
        """The ReLU/ReLU6 node that is ``node``'s only consumer and that changes nothing once ``node``'s output
        is quantized with ``out_qp``, with the activation to fuse; or None. A ReLU6 fuses only if ``out_qp``'s
        range ends at 6 or below (post-training quantization gives the layer the ReLU6's range); a ReLU6 or ReLU
        with a quantization wrapper of its own (``fake``) only if the wrapper keeps ``out_qp``."""
        user = self._only_consumer(node)
        upper = None if user is None else fusable_activation(user, self.sim_modules)
        if user is None or upper is None:
            return None
        activation = FusedActivation(upper)
        if not math.isinf(upper) and (255 - out_qp.zero_point) * out_qp.scale > upper * (1 + 1e-6):
            return None
        wrapper = self.sim_modules.get(str(user.target)) if user.op == "call_module" else None
        if isinstance(wrapper, RangeLinearQuantWrapper):
            keeps = (isinstance(wrapper, RangeLinearFakeQuantWrapper) and wrapper.preset_act_stats
                     and not wrapper.relu_fused and self._output_qparams(wrapper) == out_qp)
            return (user, activation) if keeps else None
        return user, activation

    def _add_takes_unrounded(self, node: fx.Node) -> Optional[fx.Node]:
        """The two-input addition that is ``node``'s only consumer and can take its unrounded output, or None."""
        user = self._only_consumer(node)
        if (not self.emitter.float_output_layers or user is None or user.op != "call_module"
                or user in self.adds_with_conv
                or not isinstance(self.sim_modules[str(user.target)], RangeLinearQuantEltwiseAddWrapper)
                or len(user.args) != 2):
            return None
        return user

    def run(self) -> fx.GraphModule:
        for node in self.gm.graph.nodes:
            if node in self.skip:
                continue
            handler = getattr(self, f"on_{node.op}")
            handler(node)
        return fx.GraphModule(self.emitter.modules, self.graph, class_name="QuantizedModel")

    # ------------------------------------------------------------------------------------ node kinds
    def on_placeholder(self, node: fx.Node) -> None:
        self.env[node] = self.graph.placeholder(str(node.target), default_value=node.args[0] if node.args
                                                else inspect.Signature.empty)

    def on_get_attr(self, node: fx.Node) -> None:
        """A tensor the model reads directly, also one of a submodule (``features.1.0.layer_scale``)."""
        owner, _, attribute = str(node.target).rpartition(".")
        value = getattr(self.gm.get_submodule(owner), attribute)
        self.emitter.modules[str(node.target)] = copy.deepcopy(value)
        self.env[node] = self.graph.get_attr(str(node.target))

    def on_output(self, node: fx.Node) -> None:
        self.graph.output(self.arg(node.args[0]))

    def _keeps_grid(self, node: fx.Node) -> bool:
        if node.op == "call_function":
            return node.target in GRID_PRESERVING_FUNCTIONS
        return node.op == "call_method" and node.target in GRID_PRESERVING_METHODS

    def on_call_function(self, node: fx.Node) -> None:
        self._generic(node, self.graph.call_function)

    def on_call_method(self, node: fx.Node) -> None:
        self._generic(node, self.graph.call_method)

    def _generic(self, node: fx.Node, make: Callable[..., fx.Node]) -> None:
        first = node.args[0] if node.args else None
        if (isinstance(first, fx.Node) and self.state.get(first) is not None
                and (self._keeps_grid(node) or (node.op == "call_method" and node.target in _SHAPE_METHODS))):
            args = (self.env[first],) + tuple(self.arg(a) for a in node.args[1:])
            self.env[node] = make(node.target, args, self.arg(node.kwargs))
            if node.target not in _SHAPE_METHODS:
                self.state[node] = self.state[first]
            return
        self.env[node] = make(node.target, self.arg(node.args), self.arg(node.kwargs))

    def on_call_module(self, node: fx.Node) -> None:
        name = str(node.target)
        module = self.sim_modules[name]
        if self.is_identity(node):  # folded BatchNorms, dropout: nothing to run in inference
            source = node.args[0]
            assert isinstance(source, fx.Node)  # a module call's input
            self.env[node] = self.env[source]
            if source in self.state:
                self.state[node] = self.state[source]
            return None
        if isinstance(module, RangeLinearQuantParamLayerWrapper) and module.num_bits_acts is not None:
            return self._param_layer(node, name, module)
        if isinstance(module, RangeLinearQuantParamLayerWrapper) and self._int8_with_float_output(node, module):
            return self._weights_only_layer(node, name, module)
        if isinstance(module, (RangeLinearQuantEltwiseAddWrapper, RangeLinearQuantEltwiseMultWrapper)):
            return self._binary(node, name, module, "add" if isinstance(module, RangeLinearQuantEltwiseAddWrapper)
                                else "mul")
        if isinstance(module, RangeLinearQuantMatmulWrapper):
            return self._binary(node, name, module, "matmul")
        if isinstance(module, RangeLinearQuantConcatWrapper):
            return self._concat(node, name, module)
        if isinstance(module, RangeLinearFakeQuantWrapper):
            return self._fake_quant(node, name, module)
        if isinstance(module, (RangeLinearQuantWrapper, RangeLinearEmbeddingWrapper, FP16Wrapper, FP8LinearWrapper)):
            if not isinstance(module, RangeLinearQuantParamLayerWrapper):
                raise _unsupported(name, module)
        first = node.args[0] if node.args else None
        target = self.emitter.add_module(name, copy.deepcopy(module))
        if (isinstance(module, GRID_PRESERVING_MODULES) and isinstance(first, fx.Node)
                and self.state.get(first) is not None):
            self.env[node] = self.graph.call_module(target, (self.env[first],) + tuple(self.arg(node.args[1:])))
            self.state[node] = self.state[first]
            return None
        self.env[node] = self.graph.call_module(target, self.arg(node.args), self.arg(node.kwargs))
        return None

    def _int8_with_float_output(self, node: fx.Node, module: RangeLinearQuantParamLayerWrapper) -> bool:
        """Whether a weights-only quantized layer can run as an int8 kernel with a float output: symmetric 8-bit
        weights, an input that is quantized, an emitter with ``float_output_layers``."""
        source = node.args[0] if len(node.args) == 1 else None
        return (self.emitter.float_output_layers and isinstance(source, fx.Node) and self.state.get(source) is not None
                and module.num_bits_params == 8
                and module.mode.weights in (LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED)
                and not (isinstance(module.wrapped_module, nn.modules.conv._ConvNd)
                         and module.wrapped_module.padding_mode != "zeros"))

    def _weights_only_layer(self, node: fx.Node, name: str, module: RangeLinearQuantParamLayerWrapper) -> None:
        """The layer's own computation (its input's values, its int8 weights, its float bias) as an int8 kernel
        with a float output."""
        source = node.args[0]
        assert isinstance(source, fx.Node)  # see _int8_with_float_output
        in_qp = self.state[source]
        assert in_qp is not None
        x = self.emitter.wrapper_input(self.env[source], in_qp, in_qp)
        self.env[node], self.state[node] = self.emitter.param_layer(name, module, x, in_qp, None, None), None

    def _inputs(self, node: fx.Node, module: RangeLinearQuantWrapper) -> list[fx.Node]:
        args = node.args[0] if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) else node.args
        return [self.env[arg] if self.env[arg] in self.unrounded
                else self.emitter.wrapper_input(self.env[arg], self.state.get(arg), _input_qparams(module, index))
                for index, arg in enumerate(args)]

    def _output_qparams(self, module: RangeLinearQuantWrapper) -> QParams:
        return to_pytorch_qparams(module.output_scale, module.output_zero_point, module.mode.activations)

    def _finish(self, node: fx.Node, value: fx.Node, out_qp: QParams,
                fused: Optional[tuple[fx.Node, FusedActivation]]) -> None:
        self.env[node], self.state[node] = value, out_qp
        if fused is not None:  # the activation was fused into the operation
            self.skip.add(fused[0])
            self.env[fused[0]], self.state[fused[0]] = value, out_qp

    def _fused_activation(self, module: RangeLinearQuantWrapper,
                          fused: Optional[tuple[fx.Node, FusedActivation]]) -> Optional[FusedActivation]:
        """The activation the operation applies: the one after it, or its ``make_identity`` ReLU."""
        return fused[1] if fused is not None else FusedActivation() if module.relu_fused else None

    def _param_layer(self, node: fx.Node, name: str, module: RangeLinearQuantParamLayerWrapper) -> None:
        _check_param_layer(name, module)
        (x,) = self._inputs(node, module)
        out_qp = self._output_qparams(module)
        in_qp = _input_qparams(module, 0)
        fused = self.activation_follows(node, out_qp)
        is_conv = isinstance(module.wrapped_module, nn.modules.conv._ConvNd)
        add = None if fused is not None or module.relu_fused or not is_conv else self._add_takes_unrounded(node)
        if add is not None:  # the fused conv+add kernel adds the convolution's output before rounding it
            value = self.emitter.param_layer(name, module, x, in_qp, None, None)
            self.env[node], self.state[node] = value, None
            self.unrounded.add(value)
            self.adds_with_conv.add(add)
            return
        value = self.emitter.param_layer(name, module, x, in_qp, out_qp, self._fused_activation(module, fused))
        self._finish(node, value, out_qp, fused)

    def _binary(self, node: fx.Node, name: str, module: RangeLinearQuantWrapper, kind: str) -> None:
        _check_static(name, module)
        inputs = self._inputs(node, module)
        if len(inputs) != 2:
            raise ExportError(f"'{name}' has {len(inputs)} inputs; integer {kind} kernels take two")
        if kind == "matmul":
            _no_fused_relu(name, module, kind)
        out_qp = self._output_qparams(module)
        fused = self.activation_follows(node, out_qp) if kind != "matmul" else None
        value = self.emitter.binary(name, kind, inputs, out_qp, self._fused_activation(module, fused))
        self._finish(node, value, out_qp, fused)

    def _concat(self, node: fx.Node, name: str, module: RangeLinearQuantConcatWrapper) -> None:
        _check_static(name, module)
        _no_fused_relu(name, module, "concatenation")
        out_qp = self._output_qparams(module)
        self._finish(node, self.emitter.concat(name, self._inputs(node, module), module.wrapped_module.dim, out_qp),
                     out_qp, None)

    def _fake_quant(self, node: fx.Node, name: str, module: RangeLinearFakeQuantWrapper) -> None:
        _check_static(name, module)
        if isinstance(module.wrapped_module, (FPWrapper, FP16Wrapper)):
            raise ExportError(f"'{name}' computes in another floating-point precision before its output is "
                              f"quantized (fpq_module); deployment formats run float layers in float32: set "
                              f"fpq_module: 32 for it or remove the setting")
        out_qp = self._output_qparams(module)
        first = node.args[0] if node.args else None
        inner = copy.deepcopy(module.wrapped_module)
        if (isinstance(inner, SAME_RANGE_AS_INPUT_MODULES) and isinstance(first, fx.Node)
                and self.state.get(first) == out_qp):
            target = self.emitter.add_module(name, inner)
            value = self.graph.call_module(target, (self.env[first],))
            if module.relu_fused:  # on quantized values: stays on the grid
                value = self.graph.call_function(F.relu, (value,))
            self._finish(node, value, out_qp, None)
            return
        target = self.emitter.add_module(name, inner)
        args = self.arg(node.args)
        if module.quantize_inputs:  # the inputs quantized as the simulation does, then the module in float
            args = tuple(self.emitter.dequantize(x, _input_qparams(module, index))
                         for index, x in enumerate(self._inputs(node, module)))
        value = self.graph.call_module(target, args, self.arg(node.kwargs))
        if module.relu_fused:
            value = self.graph.call_function(F.relu, (value,))
        self._finish(node, self.emitter.quantize(value, out_qp), out_qp, None)


def cpu_model(model: nn.Module) -> nn.Module:
    """``model`` itself if it lives on the CPU, else a CPU copy (the user's model is never moved)."""
    return model if all(t.device.type == "cpu" for t in model.parameters()) else copy.deepcopy(model).cpu()


def walk_quantized_model(model: nn.Module, emitter_cls: type[Emitter]) -> fx.GraphModule:
    """Re-emits ``model`` (prepared by PostTrainLinearQuantizer) with ``emitter_cls``; returns a GraphModule.

    Raises:
        ExportError: untraceable model, dynamic ranges, unsupported bit widths/modes or layer types.
    """
    was_training = model.training
    model.eval()
    try:
        return _Walker(model, emitter_cls).run()
    finally:
        model.train(was_training)

