"""Export of a post-training-quantized model to ONNX in QDQ form (QuantizeLinear/DequantizeLinear pairs).

Every quantized tensor of the simulated model becomes a ``QuantizeLinear -> DequantizeLinear`` pair with
the same scale and zero point; weights are stored as int8 initializers feeding a ``DequantizeLinear``
(per tensor or per output channel), biases as int32 initializers at the accumulator scale. Activations
are uint8 and weights int8 ("U8S8"), the combination ONNX Runtime fuses into integer kernels
(QLinearConv, QGemm, QLinearAdd, ...). A ReLU whose output range already starts at zero is dropped
(the quantization clamps at zero), so convolutions stay fusable.
"""
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pytorch_int8 import accumulator_grid_bias
from .walk import Emitter, ExportError, cpu_model, walk_quantized_model

__all__ = ["export_onnx_qdq", "build_qdq_model"]

logger = logging.getLogger(__name__)

_OPSET = 13


class QDQEmitter(Emitter):
    """Emits float operations with fake quantization (exported as QuantizeLinear/DequantizeLinear)."""

    def quantize(self, value, qparams):
        return self.graph.call_function(torch.fake_quantize_per_tensor_affine,
                                        (value, qparams.scale, qparams.zero_point, 0, 255))

    def requantize(self, value, old, new):
        return self.quantize(value, new)

    def dequantize(self, value, qparams):
        return value

    def wrapper_input(self, value, state, qparams):
        return self.quantize(value, qparams)  # ONNX Runtime needs a DequantizeLinear right before the op

    def _weight(self, name, wrapper):
        self.modules[f"{name}.weight"] = wrapper.dequantized_weight().detach().float()
        weight = self.graph.get_attr(f"{name}.weight")
        scales = (1.0 / wrapper.w_scale.double()).reshape(-1)
        if wrapper.w_scale.numel() > 1:
            self.modules[f"{name}.weight_scale"] = scales.float()
            self.modules[f"{name}.weight_zero_point"] = torch.zeros(len(scales), dtype=torch.int32)
            quantized = self.graph.call_function(torch.fake_quantize_per_channel_affine, (
                weight, self.graph.get_attr(f"{name}.weight_scale"), self.graph.get_attr(f"{name}.weight_zero_point"),
                0, -128, 127))
        else:
            quantized = self.graph.call_function(torch.fake_quantize_per_tensor_affine,
                                                 (weight, float(scales), 0, -128, 127))
        bias = accumulator_grid_bias(wrapper)
        if bias is not None:
            self.modules[f"{name}.bias"] = bias
            bias = self.graph.get_attr(f"{name}.bias")
        return quantized, bias

    def _finish(self, value, out_qp, relu):
        if relu and out_qp.zero_point != 0:  # a range starting at 0 makes the ReLU redundant
            value = self.graph.call_function(F.relu, (value,))
        return self.quantize(value, out_qp)

    def param_layer(self, name, wrapper, x, in_qp, out_qp, relu):
        weight, bias = self._weight(name, wrapper)
        layer = wrapper.wrapped_module
        if isinstance(layer, nn.Linear):
            value = self.graph.call_function(F.linear, (x, weight, bias))
        else:
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[layer.weight.dim() - 2]
            value = self.graph.call_function(conv, (x, weight, bias, layer.stride, layer.padding, layer.dilation,
                                                    layer.groups))
        return self._finish(value, out_qp, relu)

    def binary(self, name, kind, inputs, out_qp, relu):
        op = {"add": torch.add, "mul": torch.mul, "matmul": torch.matmul}[kind]
        return self._finish(self.graph.call_function(op, tuple(inputs)), out_qp, relu)

    def concat(self, name, inputs, dim, out_qp):
        return self.quantize(self.graph.call_function(torch.cat, (list(inputs), dim)), out_qp)


def build_qdq_model(model):
    """The float GraphModule with fake quantization that :func:`export_onnx_qdq` exports."""
    return walk_quantized_model(model, QDQEmitter, supports_matmul=True).eval()


# ----------------------------------------------------------------------------- ONNX graph rewriting
class _Constants:
    """Values of initializers, Constant nodes and Identity nodes of constants, by output name."""

    def __init__(self, graph):
        from onnx import numpy_helper
        self.values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attr.t)
            elif node.op_type == "Identity" and node.input[0] in self.values:
                self.values[node.output[0]] = self.values[node.input[0]]

    def get(self, name):
        return self.values.get(name)


def _quantize_array(x, scale, zero_point, axis):
    if scale.ndim and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    return np.clip(np.rint(x / scale) + zero_point.astype(np.int64), info.min, info.max).astype(zero_point.dtype)


def _fold_constant_quantize(model):
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
        quantized = _quantize_array(value, constants.get(node.input[1]), constants.get(node.input[2]), axis)
        renamed[node.output[0]] = node.input[0] + "_quantized"  # e.g. conv1.weight_quantized
        graph.initializer.append(numpy_helper.from_array(quantized, renamed[node.output[0]]))
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)


def _quantize_biases(model):
    """Float biases of Conv/Gemm fed by DequantizeLinear inputs -> int32 initializers + DequantizeLinear."""
    from onnx import helper, numpy_helper
    graph, constants = model.graph, _Constants(model.graph)
    producers = {out: node for node in graph.node for out in node.output}
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        bias = constants.get(node.input[2])
        dq_x, dq_w = producers.get(node.input[0]), producers.get(node.input[1])
        if bias is None or not all(d is not None and d.op_type == "DequantizeLinear" for d in (dq_x, dq_w)):
            continue
        scale = (constants.get(dq_x.input[1]).astype(np.float64) * constants.get(dq_w.input[1]).astype(np.float64))
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


def _remove_unused_initializers(model):
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def export_onnx_qdq(model, dummy_input, path):
    """Writes ``model`` (prepared by PostTrainLinearQuantizer, static ranges) as a QDQ ONNX file.

    Args:
        model: the simulated quantized model (not modified).
        dummy_input: an example input (tensor or tuple); the batch dimension is exported as dynamic.
        path: the ``.onnx`` file to write.
    Returns:
        ``path``. The file passes ``onnx.checker.check_model``.
    Raises:
        ExportError: as :func:`convert_distiller_ptq_model_to_pytorch` (except that quantized matmuls are
            supported), or if the ONNX exporter fails.
    Example:
        >>> export_onnx_qdq(quantized_model, torch.randn(1, 3, 32, 32), "model_int8.onnx")
    """
    import onnx

    qdq = build_qdq_model(cpu_model(model))
    inputs = tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    names = [f"input{i}" if len(inputs) > 1 else "input" for i in range(len(inputs))]
    try:
        torch.onnx.export(qdq, tuple(x.cpu() for x in inputs), str(path), dynamo=False, opset_version=_OPSET,
                          input_names=names, output_names=["output"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}})
    except Exception as err:
        raise ExportError(f"the ONNX exporter failed on the quantized model: {type(err).__name__}: {err}") from err
    onnx_model = onnx.load(str(path))
    _fold_constant_quantize(onnx_model)
    _quantize_biases(onnx_model)
    _remove_unused_initializers(onnx_model)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    logger.info("Exported the quantized model to %s (QDQ, opset %d)", path, _OPSET)
    return path
