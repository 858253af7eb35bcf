"""Per-layer settings of :class:`~distiller.quantization.PostTrainLinearQuantizer` that change what a layer
becomes or what its inputs must come from (Distiller's override keys):

* ``fake: true``: the layer runs in floating point (float weights, in ``fpq_module`` precision when given) and
  only its output is quantized (:class:`~distiller.quantization.range_linear.wrappers.RangeLinearFakeQuantWrapper`),
  whatever its type: a convolution, an add, even a ReLU or max-pooling (which otherwise stay on their input's
  grid); ``fake: false`` leaves a layer that would be fake-quantized (e.g. a Tanh) in float.
* ``make_identity: true`` on an ``nn.ReLU``: the ReLU becomes ``nn.Identity`` and the quantized layer before
  it applies it instead, by raising its output integers to the one that stands for 0 (a ReLU fused into the
  requantization, as integer kernels run it). Distiller's quantizer set it on the ReLUs it fused.
* ``inputs_quant_auto_fallback: false``: every input of the layer must come from a quantized layer in its
  activation format (whose output parameters it then reuses) or have ``input_overrides``; an input without
  either (the model's input, a float layer's output) is an error instead of being quantized with the layer's
  own statistics and output settings.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Optional

import torch
from torch import nn

from ... import modules as dm
from ..base import QBits
from .ptq_graph import QuantizationGraph
from .wrappers import FP16Wrapper, FPWrapper

__all__ = ["LAYER_OVERRIDE_TYPES", "WEIGHTED_LAYERS", "fake_problem", "fused_recurrent_problem", "identity_problem",
           "float_compute", "identity_producers", "inputs_without_quantized_producer"]

#: The types of the override-only settings ``fake`` and ``make_identity`` (not constructor arguments).
LAYER_OVERRIDE_TYPES: dict[str, Any] = {"fake": bool, "make_identity": bool}
#: Layers with weights that the quantizer turns into integers (unless ``fake``).
WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: Modules with several outputs: a fake-quantization wrapper quantizes one tensor.
_MULTI_OUTPUT = (dm.Split, dm.Chunk)
#: PyTorch's fused recurrent layers: one kernel (no gate to give a range) returning a tuple.
_FUSED_RECURRENT = (nn.RNNBase, nn.LSTMCell)
_FLOAT_DTYPES = {32: torch.float32, 64: torch.float64}


def fake_problem(module: nn.Module, name: str, bits: QBits, given: Mapping[str, Any]) -> Optional[tuple[str, str]]:
    """Why ``fake: true`` cannot apply to layer ``name``, as (setting to blame, message), or None.

    Args:
        bits: the layer's bit widths.
        given: the settings of the override entry that sets ``fake`` (bit widths included).
    """
    what = f"'{name}' ({type(module).__name__})"
    if isinstance(module, nn.Embedding):
        return "fake", f"fake: {what} is an embedding: its table is what gets quantized (bits_weights)"
    if isinstance(module, _MULTI_OUTPUT):
        return "fake", f"fake: {what} has several outputs; fake quantization quantizes one tensor"
    recurrent = fused_recurrent_problem(module, name)
    if recurrent is not None:
        return "fake", f"fake: {recurrent}"
    if bits.acts is None:
        return "fake", f"fake: true quantizes the output of {what} with bits_activations, which is null for it"
    if isinstance(module, WEIGHTED_LAYERS):
        for setting in ("bits_weights", "bits_bias", "per_channel_wts"):
            if given.get(setting) not in (None, False):
                return setting, (f"fake: true keeps the weights of {what} in floating point (only its output is "
                                 f"quantized), so {setting}: {given[setting]} would be ignored; remove it")
    if given.get("fp8"):
        return "fp8", f"fake: true and fp8: true contradict for {what}: choose one"
    return None


def fused_recurrent_problem(module: nn.Module, name: str) -> Optional[str]:
    """Why layer ``name`` cannot be quantized when it is one of PyTorch's fused recurrent layers (``nn.LSTM``,
    ``nn.GRU``, ``nn.RNN``, ``nn.LSTMCell``), with the fix; None for any other layer."""
    if not isinstance(module, _FUSED_RECURRENT):
        return None
    convert = (" convert it to distiller.modules.DistillerLSTM (distiller.modules.convert_model_to_distiller_lstm"
               "(model), whose gates are quantizable layers), or" if isinstance(module, (nn.LSTM, nn.LSTMCell)) else "")
    return (f"'{name}' ({type(module).__name__}) is a fused recurrent kernel returning a tuple: its gates cannot be "
            f"quantized and its outputs cannot be fake-quantized;{convert} keep it in float with the override "
            f"{{'{name}': {{bits_activations: null}}}}")


def identity_problem(module: nn.Module, name: str, given: Mapping[str, Any]) -> Optional[str]:
    """Why ``make_identity: true`` cannot apply to layer ``name`` (before looking at the graph), or None."""
    if not isinstance(module, nn.ReLU):
        return (f"make_identity: applies to nn.ReLU layers (the quantized layer before the ReLU applies it); "
                f"'{name}' is {type(module).__name__}")
    if given.get("fake"):
        return f"make_identity: true and fake: true contradict for '{name}': choose one"
    return None


def float_compute(module: nn.Module, precision: Optional[int]) -> nn.Module:
    """``module`` computing in the floating-point ``precision`` (``fpq_module`` bits; None: as it is): wrapped in
    :class:`FP16Wrapper` for 16, in :class:`FPWrapper` for 64, or for 32 when it holds tensors of another type."""
    if precision is None:
        return module
    if precision == 16:
        return FP16Wrapper(module)
    dtype = _FLOAT_DTYPES[precision]
    floats = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    if precision == 32 and all(t.dtype == dtype for t in floats):
        return module
    return FPWrapper(module, dtype)


def identity_producers(graph: QuantizationGraph, relu: str,
                       quantizes_output: Callable[[str], bool]) -> tuple[list[str], Optional[str]]:
    """The layers that apply the ReLU ``relu`` once it becomes an identity (``make_identity``), and None; or an
    empty list and why none can.

    Each call of ``relu`` must read the output of a layer that feeds nothing else and quantizes its output.

    Args:
        quantizes_output: whether a layer (by name) quantizes its output.
    """
    producers = [layer for layer, consumer in graph.relu_after.items() if consumer == relu]
    if not producers or len(producers) != graph.order.count(relu):
        return [], (f"make_identity: '{relu}' does not read (wherever it is called) the output of a layer that "
                    f"feeds nothing else, so no layer can apply it")
    unquantized = [layer for layer in producers if not quantizes_output(layer)]
    if unquantized:
        return [], (f"make_identity: '{relu}' reads '{unquantized[0]}', which does not quantize its output, so it "
                    f"cannot apply the ReLU")
    return producers, None


def inputs_without_quantized_producer(graph: QuantizationGraph, name: str, count: int, overridden: Mapping[int, Any],
                                      quantized_like: Callable[[str], bool]) -> list[str]:
    """The inputs of layer ``name`` without ``input_overrides`` whose producer does not quantize its output in the
    layer's activation format, each described for a message.

    Args:
        count: how many inputs the layer quantizes.
        quantized_like: whether a layer (by name) quantizes its output in the format of layer ``name``.
    """
    if not graph.traced:
        return [f"input {index} of '{name}' cannot be followed to its producer (torch.fx cannot trace the model)"
                for index in range(count) if index not in overridden]
    sources = graph.input_sources.get(name, {})
    return [f"input {index} of '{name}' comes from "
            + (f"'{sources[index]}', which does not quantize its output in that layer's format" if index in sources
               else "no quantized layer (the model's input or a float operation)")
            for index in range(count)
            if index not in overridden and not (index in sources and quantized_like(sources[index]))]
