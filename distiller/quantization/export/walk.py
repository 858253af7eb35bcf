"""Walks the torch.fx graph of a post-training-quantized model and re-emits it for a deployment format.

The walk tracks, for every value, whether it is quantized and with which PyTorch-convention parameters
(``x ~= (q - zero_point) * scale``; Distiller's ``(scale_d, zp_d)`` is ``scale = 1 / scale_d``,
``zero_point = -zp_d`` (+128 for signed 8-bit ranges, stored as uint8)). Wrappers become integer
operations with exactly the parameters of the simulated model; operations that keep values on their
input's grid (ReLU, max-pooling, reshapes, dropout) run on quantized values; everything else runs in
float on dequantized values. An :class:`Emitter` decides what each step looks like (PyTorch quantized
modules, or QuantizeLinear/DequantizeLinear pairs for ONNX).
"""
import abc
import copy
import inspect
from dataclasses import dataclass

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
from ..range_linear.ptq_graph import (GRID_PRESERVING_FUNCTIONS, GRID_PRESERVING_METHODS, GRID_PRESERVING_MODULES,
                                      SAME_RANGE_AS_INPUT_MODULES)
from ..range_linear.wrappers import FP16Wrapper, RangeLinearFakeQuantWrapper, RangeLinearQuantWrapper

__all__ = ["QParams", "Emitter", "ExportError", "walk_quantized_model"]

_SHAPE_METHODS = {"size", "dim", "numel"}
_RELU_FUNCTIONS = {torch.relu, F.relu}
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


def to_pytorch_qparams(scale_d, zero_point_d, mode):
    """PyTorch-convention uint8 parameters of Distiller's ``(scale, zero_point)`` in ``mode``."""
    offset = 0 if mode == LinearQuantMode.ASYMMETRIC_UNSIGNED else 128
    return QParams(1.0 / float(scale_d), int(round(-float(zero_point_d))) + offset)


class Emitter(abc.ABC):
    """Builds the output graph for one deployment format; every method returns the new fx node."""

    def __init__(self, graph, modules):
        self.graph = graph        # the fx.Graph being built
        self.modules = modules    # name -> module of the output model

    def add_module(self, name, module):
        self.modules[name] = module
        return name

    @abc.abstractmethod
    def quantize(self, value, qparams):
        """A float value quantized with ``qparams``."""

    @abc.abstractmethod
    def requantize(self, value, old, new):
        """A quantized value moved from ``old`` to ``new`` parameters."""

    @abc.abstractmethod
    def dequantize(self, value, qparams):
        """The float value of a quantized one."""

    def wrapper_input(self, value, state, qparams):
        """The input of an integer operation: ``value`` (quantized with ``state`` or float) as ``qparams``."""
        if state is None:
            return self.quantize(value, qparams)
        return value if state == qparams else self.requantize(value, state, qparams)

    @abc.abstractmethod
    def param_layer(self, name, wrapper, x, in_qp, out_qp, relu):
        """Conv/Linear from a quantized input; ``relu``: the layer's only consumer is a ReLU (fused)."""

    @abc.abstractmethod
    def binary(self, name, kind, inputs, out_qp, relu):
        """``kind`` in ('add', 'mul', 'matmul') of quantized inputs."""

    @abc.abstractmethod
    def concat(self, name, inputs, dim, out_qp):
        """Concatenation of quantized inputs."""


def _check_static(name, wrapper):
    if not wrapper.preset_act_stats:
        raise ExportError(f"'{name}' uses dynamic activation ranges; integer deployment needs static ranges: "
                          f"quantize with calibration statistics (model_activation_stats / --qe-stats-file)")
    if wrapper.num_bits_acts != 8:
        raise ExportError(f"'{name}' has {wrapper.num_bits_acts}-bit activations; integer kernels are 8-bit")
    if wrapper.scale_approx_mult_bits is not None:
        raise ExportError(f"'{name}' approximates scales with integer multipliers (scale_approx_mult_bits); the "
                          f"deployment kernels requantize with float scales, so results would differ")


def _check_param_layer(name, wrapper):
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


def _unsupported(name, module):
    hint = {RangeLinearQuantMatmulWrapper: "exclude it with overrides {%r: {bits_activations: null}}" % name,
            RangeLinearEmbeddingWrapper: "exclude it with overrides {%r: {bits_weights: null}}" % name}
    return ExportError(f"'{name}' ({type(module).__name__}) has no integer kernel in this format; "
                       + hint.get(type(module), f"exclude it from quantization (overrides {{{name!r}: "
                                                f"{{bits_activations: null, bits_weights: null}}}})"))


class _Walker:
    def __init__(self, model, emitter_cls, supports_matmul):
        self.sim = model
        try:
            self.gm = trace_model(model, leaf_modules=_LEAF_TYPES)
        except GraphCaptureError as err:
            raise ExportError(f"integer deployment needs a model that torch.fx can trace: {err}") from None
        self.sim_modules = dict(model.named_modules())
        self.graph = fx.Graph()
        self.emitter = emitter_cls(self.graph, {})
        self.supports_matmul = supports_matmul
        self.env, self.state, self.skip = {}, {}, set()

    def arg(self, value, want_float=True):
        """New-graph counterpart of an argument; quantized values are dequantized if ``want_float``."""
        def convert(node):
            new, qp = self.env[node], self.state.get(node)
            return self.emitter.dequantize(new, qp) if (qp is not None and want_float) else new
        return fx.map_arg(value, convert)

    def is_identity(self, node):
        return node.op == "call_module" and isinstance(self.sim_modules[node.target], _IDENTITIES)

    def relu_follows(self, node):
        """The ReLU node that is ``node``'s only consumer (through identities), or None."""
        while len(node.users) == 1:
            (user,) = node.users
            if ((user.op == "call_module" and isinstance(self.sim_modules[user.target], nn.ReLU))
                    or (user.op == "call_function" and user.target in _RELU_FUNCTIONS)
                    or (user.op == "call_method" and user.target in ("relu", "relu_"))):
                return user
            if not self.is_identity(user):
                return None
            node = user
        return None

    def run(self):
        for node in self.gm.graph.nodes:
            if node in self.skip:
                continue
            handler = getattr(self, f"on_{node.op}")
            handler(node)
        return fx.GraphModule(self.emitter.modules, self.graph, class_name="QuantizedModel")

    # ------------------------------------------------------------------------------------ node kinds
    def on_placeholder(self, node):
        self.env[node] = self.graph.placeholder(node.target, default_value=node.args[0] if node.args
                                                else inspect.Signature.empty)

    def on_get_attr(self, node):
        self.emitter.modules[node.target] = copy.deepcopy(getattr(self.gm, node.target))
        self.env[node] = self.graph.get_attr(node.target)

    def on_output(self, node):
        self.graph.output(self.arg(node.args[0]))

    def _keeps_grid(self, node):
        if node.op == "call_function":
            return node.target in GRID_PRESERVING_FUNCTIONS
        return node.op == "call_method" and node.target in GRID_PRESERVING_METHODS

    def on_call_function(self, node):
        self._generic(node, self.graph.call_function)

    def on_call_method(self, node):
        self._generic(node, self.graph.call_method)

    def _generic(self, node, make):
        first = node.args[0] if node.args else None
        on_quantized = isinstance(first, fx.Node) and self.state.get(first) is not None
        if on_quantized and (self._keeps_grid(node) or (node.op == "call_method" and node.target in _SHAPE_METHODS)):
            args = (self.env[first],) + tuple(self.arg(a) for a in node.args[1:])
            self.env[node] = make(node.target, args, self.arg(node.kwargs))
            if node.target not in _SHAPE_METHODS:
                self.state[node] = self.state[first]
            return
        self.env[node] = make(node.target, self.arg(node.args), self.arg(node.kwargs))

    def on_call_module(self, node):
        name, module = node.target, self.sim_modules[node.target]
        if self.is_identity(node):  # folded BatchNorms, dropout: nothing to run in inference
            source = node.args[0]
            self.env[node] = self.env[source]
            if source in self.state:
                self.state[node] = self.state[source]
            return None
        if isinstance(module, RangeLinearQuantParamLayerWrapper) and module.num_bits_acts is not None:
            return self._param_layer(node, name, module)
        if isinstance(module, (RangeLinearQuantEltwiseAddWrapper, RangeLinearQuantEltwiseMultWrapper)):
            return self._binary(node, name, module, "add" if isinstance(module, RangeLinearQuantEltwiseAddWrapper)
                                else "mul")
        if isinstance(module, RangeLinearQuantMatmulWrapper) and self.supports_matmul:
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

    def _inputs(self, node, module):
        args = node.args[0] if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) else node.args
        result = []
        for index, arg in enumerate(args):
            qp = to_pytorch_qparams(module.input_scales[index], module.input_zero_points[index],
                                    module.mode.activations)
            result.append(self.emitter.wrapper_input(self.env[arg], self.state.get(arg), qp))
        return result

    def _output_qparams(self, module):
        return to_pytorch_qparams(module.output_scale, module.output_zero_point, module.mode.activations)

    def _finish(self, node, value, out_qp, relu_node):
        self.env[node], self.state[node] = value, out_qp
        if relu_node is not None:  # the ReLU was fused into the operation
            self.skip.add(relu_node)
            self.env[relu_node], self.state[relu_node] = value, out_qp

    def _param_layer(self, node, name, module):
        _check_param_layer(name, module)
        (x,) = self._inputs(node, module)
        relu = self.relu_follows(node)
        out_qp = self._output_qparams(module)
        in_qp = to_pytorch_qparams(module.input_scales[0], module.input_zero_points[0], module.mode.activations)
        self._finish(node, self.emitter.param_layer(name, module, x, in_qp, out_qp, relu is not None), out_qp, relu)

    def _binary(self, node, name, module, kind):
        _check_static(name, module)
        inputs = self._inputs(node, module)
        if len(inputs) != 2:
            raise ExportError(f"'{name}' has {len(inputs)} inputs; integer {kind} kernels take two")
        relu = self.relu_follows(node) if kind != "matmul" else None
        out_qp = self._output_qparams(module)
        self._finish(node, self.emitter.binary(name, kind, inputs, out_qp, relu is not None), out_qp, relu)

    def _concat(self, node, name, module):
        _check_static(name, module)
        out_qp = self._output_qparams(module)
        self._finish(node, self.emitter.concat(name, self._inputs(node, module), module.wrapped_module.dim, out_qp),
                     out_qp, None)

    def _fake_quant(self, node, name, module):
        _check_static(name, module)
        out_qp = self._output_qparams(module)
        first = node.args[0] if node.args else None
        inner = copy.deepcopy(module.wrapped_module)
        if (isinstance(inner, SAME_RANGE_AS_INPUT_MODULES) and isinstance(first, fx.Node)
                and self.state.get(first) == out_qp):
            target = self.emitter.add_module(name, inner)
            self._finish(node, self.graph.call_module(target, (self.env[first],)), out_qp, None)
            return
        target = self.emitter.add_module(name, inner)
        value = self.graph.call_module(target, self.arg(node.args), self.arg(node.kwargs))
        self._finish(node, self.emitter.quantize(value, out_qp), out_qp, None)


def cpu_model(model):
    """``model`` itself if it lives on the CPU, else a CPU copy (the user's model is never moved)."""
    return model if all(t.device.type == "cpu" for t in model.parameters()) else copy.deepcopy(model).cpu()


def walk_quantized_model(model, emitter_cls, supports_matmul=False):
    """Re-emits ``model`` (prepared by PostTrainLinearQuantizer) with ``emitter_cls``; returns a GraphModule.

    Raises:
        ExportError: untraceable model, dynamic ranges, unsupported bit widths/modes or layer types.
    """
    was_training = model.training
    model.eval()
    try:
        return _Walker(model, emitter_cls, supports_matmul).run()
    finally:
        model.train(was_training)

