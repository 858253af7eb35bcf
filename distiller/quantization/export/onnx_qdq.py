"""Export of a post-training-quantized model to ONNX in QDQ form (QuantizeLinear/DequantizeLinear pairs).

Every quantized tensor of the simulated model becomes a ``QuantizeLinear -> DequantizeLinear`` pair with
the same scale and zero point; weights are stored as int8 initializers feeding a ``DequantizeLinear``
(per tensor or per output channel), biases as int32 initializers at the accumulator scale. Activations
are uint8 and weights int8 ("U8S8"), the combination ONNX Runtime fuses into integer kernels
(QLinearConv, QGemm, QLinearAdd, ...). A ReLU (ReLU6) whose output range already starts at zero (and ends at
6) is dropped (the quantization clamps there), so convolutions stay fusable.

The model goes through PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``, built on
``torch.export``; it needs the ``onnxscript`` package). Fake quantization is emitted as the custom op
``distiller::quantize_dequantize``, which the exporter translates to a QuantizeLinear/DequantizeLinear pair:
``torch.fake_quantize_per_tensor_affine`` itself cannot be exported with a dynamic batch dimension
(torch 2.14: ``torch.export`` fails with ``UnsupportedOperatorException:
aten.fake_quantize_per_tensor_affine_cachemask.default``, which has no kernel for symbolic shapes).
Measured (torch 2.14.1, onnxscript 0.7.2, onnxruntime 1.32) on the ResidualConcatNet of the tests
(uint8 activations, int8 weights, 64 random inputs): ONNX Runtime's outputs differ from the simulated
PyTorch model by at most one output quantization step (1.57e-3) with per-channel weights and two steps
(3.14e-3) with per-tensor weights, with 100% top-1 agreement in both; ONNX Runtime fuses the same integer
kernels as with the former TorchScript-based export (5 QLinearConv, QLinearAdd, QLinearConcat, QGemm).
The TorchScript export was within one step in both cases: the new exporter writes the float average
pooling as ReduceMean instead of GlobalAveragePool, whose different summation order moves one sample's
classifier input across a rounding tie (16 of 640 outputs differ by one step between the two exports).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import types
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ...errors import MissingDependencyError
from ..range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from .from_qat import post_train_equivalent
from .integers import accumulator_grid_bias
from .walk import Emitter, FusedActivation, OutputModules, QParams, cpu_model, walk_quantized_model

if TYPE_CHECKING:  # onnx is imported where it is used (it is slow to import)
    import onnx

__all__ = ["export_onnx_qdq", "export_to_onnx", "build_qdq_model", "import_onnx_package", "ONNX_INSTALL_HINT"]

logger = logging.getLogger(__name__)

_OPSET = 20
_Path = Union[str, os.PathLike]
#: How to install the optional packages of ONNX export and ONNX Runtime evaluation.
ONNX_INSTALL_HINT = "pip install 'distiller[onnx]'"


def import_onnx_package(name: str, feature: str) -> types.ModuleType:
    """Imports the optional package ``name`` (``onnxruntime``, ``onnxscript``) that ``feature`` needs.

    Raises:
        MissingDependencyError: the package is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise  # the package is there but broken: not a missing dependency
        raise MissingDependencyError(f"{feature} needs the '{name}' package, which is not installed: "
                                     f"{ONNX_INSTALL_HINT} (or pip install {name})") from None


@functools.cache
def _quantize_dequantize_op() -> torch._ops.OpOverload:
    """The OpOverload of the custom op ``distiller::quantize_dequantize(x, scale, zero_point, axis)``: fake
    quantization to the full range of ``zero_point``'s dtype (uint8 or int8), per tensor for a 0-d
    ``scale``, else per channel along ``axis``. Registered on first use."""
    @torch.library.custom_op("distiller::quantize_dequantize", mutates_args=())
    def quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                            axis: int) -> torch.Tensor:
        info = torch.iinfo(zero_point.dtype)
        if scale.dim() == 0:
            return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), info.min, info.max)
        return torch.fake_quantize_per_channel_affine(x, scale.float(), zero_point.int(), axis, info.min, info.max)

    @quantize_dequantize.register_fake
    def _(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.empty_like(x)
    return torch.ops.distiller.quantize_dequantize.default


def _onnx_translation() -> dict[Callable[..., Any], Callable[..., Any]]:
    """``custom_translation_table`` of the exporter: our fake quantization as QuantizeLinear/DequantizeLinear."""
    opset = getattr(import_onnx_package("onnxscript", "ONNX export"), f"opset{_OPSET}")

    def quantize_dequantize(x: Any, scale: Any, zero_point: Any, axis: int) -> Any:  # onnxscript values
        quantized = opset.QuantizeLinear(x, scale, zero_point, axis=axis)
        return opset.DequantizeLinear(quantized, scale, zero_point, axis=axis)
    return {_quantize_dequantize_op(): quantize_dequantize}


class QDQEmitter(Emitter):
    """Emits float operations with fake quantization (exported as QuantizeLinear/DequantizeLinear)."""

    def __init__(self, graph: fx.Graph, modules: OutputModules) -> None:
        super().__init__(graph, modules)
        self._constants = 0

    def _constant(self, name: str, value: torch.Tensor) -> fx.Node:
        self.modules[name] = value
        return self.graph.get_attr(name)

    def _quantize_dequantize(self, value: fx.Node, scale: fx.Node, zero_point: fx.Node, axis: int = 0) -> fx.Node:
        return self.graph.call_function(_quantize_dequantize_op(), (value, scale, zero_point, axis))

    def quantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        self._constants += 1
        scale = self._constant(f"qdq{self._constants}_scale", torch.tensor(qparams.scale, dtype=torch.float32))
        zero_point = self._constant(f"qdq{self._constants}_zero_point",
                                    torch.tensor(qparams.zero_point, dtype=torch.uint8))
        return self._quantize_dequantize(value, scale, zero_point)

    def requantize(self, value: fx.Node, old: QParams, new: QParams) -> fx.Node:
        return self.quantize(value, new)

    def dequantize(self, value: fx.Node, qparams: QParams) -> fx.Node:
        return value

    def wrapper_input(self, value: fx.Node, state: Optional[QParams], qparams: QParams) -> fx.Node:
        return self.quantize(value, qparams)  # ONNX Runtime needs a DequantizeLinear right before the op

    def _weight(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper) -> tuple[fx.Node, Optional[fx.Node]]:
        weight = self._constant(f"{name}.weight", wrapper.dequantized_weight().detach().float())
        scales = (1.0 / wrapper.w_scale.double()).reshape(-1).float()
        if wrapper.w_scale.numel() == 1:
            scales = scales[0]
        scale = self._constant(f"{name}.weight_scale", scales)
        zero_point = self._constant(f"{name}.weight_zero_point", torch.zeros_like(scales, dtype=torch.int8))
        quantized = self._quantize_dequantize(weight, scale, zero_point)
        bias = accumulator_grid_bias(wrapper)
        return quantized, None if bias is None else self._constant(f"{name}.bias", bias)

    def _finish(self, value: fx.Node, out_qp: Optional[QParams], activation: Optional[FusedActivation]) -> fx.Node:
        if out_qp is None:
            return value
        if activation is not None and not activation.redundant(out_qp):
            value = activation.emit(self.graph, value)
        return self.quantize(value, out_qp)

    def param_layer(self, name: str, wrapper: RangeLinearQuantParamLayerWrapper, x: fx.Node, in_qp: QParams,
                    out_qp: Optional[QParams], activation: Optional[FusedActivation]) -> fx.Node:
        weight, bias = self._weight(name, wrapper)
        layer = wrapper.wrapped_module
        if isinstance(layer, nn.Linear):
            value = self.graph.call_function(F.linear, (x, weight, bias))
        else:
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[layer.weight.dim() - 2]
            value = self.graph.call_function(conv, (x, weight, bias, layer.stride, layer.padding, layer.dilation,
                                                    layer.groups))
        return self._finish(value, out_qp, activation)

    def binary(self, name: str, kind: str, inputs: Sequence[fx.Node], out_qp: QParams,
               activation: Optional[FusedActivation]) -> fx.Node:
        ops: dict[str, Callable[..., torch.Tensor]] = {"add": torch.add, "mul": torch.mul, "matmul": torch.matmul}
        op = ops[kind]
        return self._finish(self.graph.call_function(op, tuple(inputs)), out_qp, activation)

    def concat(self, name: str, inputs: Sequence[fx.Node], dim: int, out_qp: QParams) -> fx.Node:
        return self.quantize(self.graph.call_function(torch.cat, (list(inputs), dim)), out_qp)


def build_qdq_model(model: nn.Module) -> fx.GraphModule:
    """The float GraphModule with fake quantization that :func:`export_onnx_qdq` exports."""
    return walk_quantized_model(post_train_equivalent(model), QDQEmitter).eval()


# ----------------------------------------------------------------------------- ONNX graph rewriting
class _Constants:
    """Values of initializers, Constant nodes and Identity nodes of constants, by output name."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        from onnx import numpy_helper
        self.values: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attr.t)
            elif node.op_type == "Identity" and node.input[0] in self.values:
                self.values[node.output[0]] = self.values[node.input[0]]

    def get(self, name: str) -> Optional[np.ndarray]:
        return self.values.get(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def _quantize_array(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    return np.clip(np.rint(x / scale) + zero_point.astype(np.int64), info.min, info.max).astype(zero_point.dtype)


def _fold_constant_quantize(model: onnx.ModelProto) -> None:
    """QuantizeLinear of a constant (weights) -> an integer initializer feeding the DequantizeLinear."""
    from onnx import numpy_helper
    graph, constants = model.graph, _Constants(model.graph)
    kept, renamed = [], {}
    for node in graph.node:
        value = constants.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if value is None or value.dtype.kind != "f":
            kept.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        quantized = _quantize_array(value, constants[node.input[1]], constants[node.input[2]], axis)
        renamed[node.output[0]] = node.input[0] + "_quantized"  # e.g. conv1.weight_quantized
        graph.initializer.append(numpy_helper.from_array(quantized, renamed[node.output[0]]))
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)


def _quantize_biases(model: onnx.ModelProto) -> None:
    """Float biases of Conv/Gemm fed by DequantizeLinear inputs -> int32 initializers + DequantizeLinear."""
    from onnx import helper, numpy_helper
    graph, constants = model.graph, _Constants(model.graph)
    producers = {out: node for node in graph.node for out in node.output}
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        bias = constants.get(node.input[2])
        dq_x, dq_w = producers.get(node.input[0]), producers.get(node.input[1])
        if (bias is None or dq_x is None or dq_w is None
                or not dq_x.op_type == dq_w.op_type == "DequantizeLinear"):
            continue
        scale = constants[dq_x.input[1]].astype(np.float64) * constants[dq_w.input[1]].astype(np.float64)
        q_bias = np.rint(bias.astype(np.float64) / scale).astype(np.int32)
        name = node.input[2] + "_int32"
        scale_name, zp_name = name + "_scale", name + "_zero_point"
        graph.initializer.extend([numpy_helper.from_array(q_bias, name),
                                  numpy_helper.from_array(scale.astype(np.float32).reshape(-1)
                                                          if scale.size > 1 else scale.astype(np.float32), scale_name),
                                  numpy_helper.from_array(np.zeros_like(q_bias) if scale.size > 1
                                                          else np.array(0, dtype=np.int32), zp_name)])
        dequantized = name + "_dequantized"
        graph.node.insert(list(graph.node).index(node), helper.make_node(
            "DequantizeLinear", [name, scale_name, zp_name], [dequantized], axis=0))
        node.input[2] = dequantized


def _remove_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def export_onnx_qdq(model: nn.Module, dummy_input: Any, path: _Path) -> _Path:
    """Writes ``model`` (prepared by PostTrainLinearQuantizer, static ranges, or trained by
    QuantAwareTrainRangeLinearQuantizer: see :mod:`.from_qat`) as a QDQ ONNX file.

    Args:
        model: the simulated quantized model (not modified).
        dummy_input: an example input (tensor or tuple); the batch dimension is exported as dynamic.
        path: the ``.onnx`` file to write.
    Returns:
        ``path``. The file passes ``onnx.checker.check_model``.
    Raises:
        ExportError: as :func:`~.pt2e.to_pt2e` (except that quantized matmuls are
            supported).
        MissingDependencyError: the ``onnxscript`` package (needed by PyTorch's exporter) is not installed.
    Example:
        >>> export_onnx_qdq(quantized_model, torch.randn(1, 3, 32, 32), "model_int8.onnx")
    """
    import onnx

    translation = _onnx_translation()
    inputs = tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    export_to_onnx(build_qdq_model(cpu_model(model)), tuple(x.cpu() for x in inputs), path,
                   custom_translation_table=translation)
    onnx_model = onnx.load(str(path))
    _fold_constant_quantize(onnx_model)
    _quantize_biases(onnx_model)
    _remove_unused_initializers(onnx_model)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    logger.info("Exported the quantized model to %s (QDQ, opset %d)", path, _OPSET)
    explicit = _explicit_activations(onnx_model)
    if explicit:
        logger.warning("%d quantized conv/linear layer(s) apply their ReLU explicitly, because their output ranges "
                       "are symmetric (zero point 128): ONNX Runtime does not fuse those into integer kernels and runs "
                       "them in float; quantize activations asymmetric unsigned (mode asym_u, --qe-mode-acts asym_u) "
                       "for a range that starts at 0", explicit)
    return path


def _explicit_activations(onnx_model: onnx.ModelProto) -> int:
    """How many Conv/Gemm/MatMul outputs go through a Relu/Clip before their QuantizeLinear."""
    producers = {output: node.op_type for node in onnx_model.graph.node for output in node.output}
    return sum(1 for node in onnx_model.graph.node
               if node.op_type in ("Relu", "Clip") and producers.get(node.input[0]) in ("Conv", "Gemm", "MatMul"))


def export_to_onnx(model: nn.Module, dummy_input: Any, path: _Path, output_name: str = "output",
                   custom_translation_table: Optional[dict[Callable[..., Any], Callable[..., Any]]] = None,
                   ) -> _Path:
    """Exports ``model`` with PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``) to one
    ``.onnx`` file, with a dynamic batch dimension; inputs are named ``input`` (``input0``, ``input1``...
    for several).

    Raises:
        MissingDependencyError: the ``onnxscript`` package, which the exporter needs, is not installed.
    """
    import_onnx_package("onnxscript", "ONNX export")
    inputs = tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    names = [f"input{i}" if len(inputs) > 1 else "input" for i in range(len(inputs))]
    batch = torch.export.Dim("batch")
    with torch.no_grad(), _exporter_logs_at_warning():
        torch.onnx.export(model, tuple(_batch_of_two(x) for x in inputs), str(path), dynamo=True,
                          opset_version=_OPSET, input_names=names, output_names=[output_name],
                          dynamic_shapes=tuple({0: batch} for _ in inputs),
                          custom_translation_table=custom_translation_table, external_data=False, verbose=False)
    return path


@contextlib.contextmanager
def _exporter_logs_at_warning() -> Iterator[None]:
    """The exporter's optimizer (onnxscript, onnx_ir) logs each constant it leaves unfolded at INFO, dozens of
    lines per model in an application's log; raise its loggers to WARNING unless the user set their level."""
    quieted = [log for log in map(logging.getLogger, ("onnxscript", "onnx_ir")) if log.level == logging.NOTSET]
    for log in quieted:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log in quieted:
            log.setLevel(logging.NOTSET)


def _batch_of_two(x: torch.Tensor) -> torch.Tensor:
    """An example input with a batch of at least two: ``torch.export`` specializes a batch of one to a
    constant, which would fix the exported model's batch size."""
    return torch.cat([x, x]) if x.shape[0] == 1 else x
