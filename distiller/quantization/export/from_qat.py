"""The post-training-quantized equivalent of a model trained by :class:`QuantAwareTrainRangeLinearQuantizer`.

Quantization-aware training (QAT) quantizes the weights of conv/linear layers from their trained float copies
at every forward, and the activations only where it tracked a range: after each ``nn.ReLU`` / ``nn.ReLU6``
(:class:`~distiller.quantization.range_linear.qat.FakeLinearQuantization`) and at the model input. Everything
else (a convolution whose output feeds a residual add, the add, the classifier's logits) computes in float.
:func:`post_train_equivalent` writes that forward as a model prepared by :class:`PostTrainLinearQuantizer`
with statistics built from the tracked ranges, which the deployment walk lowers:

* a conv/linear layer (or an add/product) whose inputs are all quantized by QAT and whose only consumer is a
  fake-quantized ``nn.ReLU`` becomes an integer layer with that ReLU fused: its output range is the ReLU's
  tracked range, its inputs share their producers' parameters (the model input: the tracked input range);
* any other quantized layer keeps the float output QAT trained it with: its int8-rounded weights with float
  activations (``bits_activations: null``), which the PT2E lowering runs as an int8 kernel with a float output
  when its input is quantized (the second convolution of a residual block: int8 input and weights, float output
  into the add, the same values as QAT), in float otherwise (the classifier after average pooling);
* a fake-quantized ReLU after such a float layer is quantized by itself (``fake: true``) with its tracked range.

Weights are the trained float copies (``float_weight``), quantized as QAT quantizes them at every forward
(same bits, mode, per-channel setting); BatchNorms are folded into them first. With ``fold_bn`` QAT trained
the folded weights and the lowering is exact; without it, per-tensor weights are rounded after folding
rather than before (per-channel weights give the same integers either way), which a warning names.
"""
from __future__ import annotations

import copy
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Optional

from torch import fx, nn

from ... import modules as dm
from ...graph import GraphCaptureError, trace_model
from ...masking import FP_BKP_PREFIX
from ...model_tools import model_setattr
from ..base import _Preparation, inner_model
from ..bn_fold import SimulatedFoldedBatchNorm, find_batchnorm_pairs
from ..range_linear.post_train import PostTrainLinearQuantizer
from ..range_linear.ptq_graph import (GRID_PRESERVING_MODULES, QuantizationGraph, _is_grid_preserving, analyze_model,
                                      fold_batch_norm)
from ..range_linear.qat import (FakeLinearQuantization, FakeQuantizationWrapper, QuantAwareTrainRangeLinearQuantizer,
                                _quantize_model_inputs)
from ..replay import quantizer_from_state
from .walk import ExportError

__all__ = ["post_train_equivalent", "is_qat_model"]

logger = logging.getLogger(__name__)

#: Layers that become integer layers when QAT quantized their inputs and the ReLU after them.
_INTEGER_CANDIDATES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, dm.EltwiseAdd, dm.EltwiseMult)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def is_qat_model(model: nn.Module) -> bool:
    """Whether ``model`` holds quantization-aware training's fake quantization."""
    return any(isinstance(module, FakeLinearQuantization) for module in model.modules())


def post_train_equivalent(model: nn.Module) -> nn.Module:
    """``model`` itself if it is not a QAT model, else a new model prepared by :class:`PostTrainLinearQuantizer`
    that computes the QAT model's eval forward (see the module docstring); ``model`` is not modified.

    Raises:
        ExportError: a fake quantization that never saw a training batch (no tracked range), activations or
            weights of other than 8 bits, no record of the quantizer that prepared the model, or a model that
            torch.fx cannot trace (each message names the layer and the setting).
    """
    if not is_qat_model(model):
        return model
    source = inner_model(model)
    record = _qat_record(source)
    float_model = copy.deepcopy(source).eval()
    fake_quants, input_quant = _strip_qat(float_model)
    weight_bits = _weight_bits(float_model, record)
    _check_eight_bits(fake_quants, input_quant, weight_bits)
    _check_trained(fake_quants, input_quant)
    dm.convert_functional_ops(float_model)
    folds = _batchnorm_pairs(float_model)
    graph = analyze_model(float_model, pass_through={bn for _, bn in folds}, producers=set(fake_quants))
    if not graph.traced:
        raise ExportError(f"integer deployment needs a model that torch.fx can trace; {type(source).__name__} "
                          f"cannot be traced (see the warning above)")
    input_readers = _model_input_readers(float_model, set(fake_quants)) if input_quant is not None else {}
    integer = _integer_layers(float_model, graph, fake_quants, input_readers, weight_bits)
    modules = dict(float_model.named_modules())
    on_grid = {relu for relu in integer.values() if isinstance(modules[relu], GRID_PRESERVING_MODULES)}
    overrides, stats = _settings(fake_quants, input_quant, input_readers, integer, on_grid, weight_bits)
    args = record["args"]
    quantizer = PostTrainLinearQuantizer(float_model, bits_activations=None, bits_parameters=None, bits_accum=32,
                                         overrides=overrides, mode=args["mode"],
                                         per_channel_wts=args["per_channel_wts"], model_activation_stats=stats)
    quantizer.prepare_model()
    _warn_approximations(folds, args, input_readers, integer)
    logger.info("Lowering a quantization-aware-trained model through its post-training-quantized equivalent: "
                "%d integer layer(s) with the tracked ranges, %d layer(s) with int8 weights whose output training "
                "left in float", len(integer),
                sum(1 for bits in weight_bits.values() if bits is not None) - len(set(integer) & set(weight_bits)))
    return float_model


def _qat_record(model: nn.Module) -> dict[str, Any]:
    preparation = _Preparation.of(model)
    if preparation is None or not issubclass(preparation.quantizer_class, QuantAwareTrainRangeLinearQuantizer):
        found = "no quantizer" if preparation is None else preparation.quantizer_class.__name__
        raise ExportError(f"the model holds quantization-aware training's fake quantization but was prepared by "
                          f"{found}, not QuantAwareTrainRangeLinearQuantizer, so its weights' settings are unknown: "
                          f"prepare it with QuantAwareTrainRangeLinearQuantizer (or load_checkpoint)")
    return preparation.record


def _strip_qat(model: nn.Module) -> tuple[dict[str, FakeLinearQuantization], Optional[FakeLinearQuantization]]:
    """Turns the QAT model back into its float model, in place: ReLUs unwrapped, the trained float weights as
    the layers' parameters, ``fold_bn``'s simulated folding replaced by the folded float layer, no QAT hooks.

    Returns:
        the fake quantizations by the name of the module whose output they quantize, and the input's (or None).
    """
    _Preparation.forget(model)
    for key in [key for key, hook in model._forward_pre_hooks.items() if hook is _quantize_model_inputs]:
        del model._forward_pre_hooks[key]
    input_quant = model._modules.pop("inputs_quant", None)
    fake_quants: dict[str, FakeLinearQuantization] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, FakeQuantizationWrapper):
            fake_quants[name] = module.fake_q
            model_setattr(model, name, module.wrapped_module)
        elif isinstance(module, SimulatedFoldedBatchNorm):
            layer = module.param_module
            fold_batch_norm(layer, module.bn)  # the layer QAT trains: weights and bias of the eval forward
            model_setattr(model, name, layer)
        else:
            _restore_float_copies(module)
    if input_quant is not None and not isinstance(input_quant, FakeLinearQuantization):
        raise TypeError(f"'inputs_quant' of a QAT model is a {type(input_quant).__name__}")
    return fake_quants, input_quant


def _restore_float_copies(module: nn.Module) -> None:
    """The trained float copy becomes the parameter again; the quantized values and their parameters go."""
    for attr in ("weight", "bias"):
        float_copy = module._parameters.pop(FP_BKP_PREFIX + attr, None)
        if float_copy is None:
            continue
        for buffer in (attr, f"{attr}_scale", f"{attr}_zero_point"):
            module._buffers.pop(buffer, None)
        module.register_parameter(attr, float_copy)


def _check_trained(fake_quants: Mapping[str, FakeLinearQuantization],
                   input_quant: Optional[FakeLinearQuantization]) -> None:
    untrained = [name for name, fq in (*fake_quants.items(), ("inputs_quant", input_quant))
                 if fq is not None and int(fq.iter_count) == 0]
    if untrained:
        raise ExportError(f"{', '.join(repr(n) for n in untrained[:5])} never saw a training batch, so "
                          f"quantization-aware training tracked no activation range there (its eval forward "
                          f"measures each batch): train the model before deploying it")


def _weight_bits(model: nn.Module, record: Mapping[str, Any]) -> dict[str, Optional[int]]:
    """Bits of the weights QAT trained, by conv/linear layer name (None: float weights)."""
    qbits = quantizer_from_state(model, record).module_qbits_map
    return {name: qbits[name].wts for name, module in model.named_modules() if isinstance(module, _WEIGHTED)}


def _check_eight_bits(fake_quants: Mapping[str, FakeLinearQuantization], input_quant: Optional[FakeLinearQuantization],
                      weight_bits: Mapping[str, Optional[int]]) -> None:
    activations = [(name, fq.num_bits) for name, fq in (*fake_quants.items(), ("inputs_quant", input_quant))
                   if fq is not None and fq.num_bits != 8]
    if activations:
        name, bits = activations[0]
        setting = "num_bits_inputs" if name == "inputs_quant" else "bits_activations"
        raise ExportError(f"'{name}' was trained with {bits}-bit activations ({setting}); integer kernels take 8-bit "
                          f"activations: train with {setting}: 8")
    weights = [(name, bits) for name, bits in weight_bits.items() if bits is not None and bits != 8]
    if weights:
        name, bits = weights[0]
        raise ExportError(f"'{name}' was trained with {bits}-bit weights (bits_weights); integer kernels take 8-bit "
                          f"weights: train with bits_weights: 8 (or bits_weights: null for that layer)")


def _batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    try:
        return find_batchnorm_pairs(model)
    except GraphCaptureError as err:
        raise ExportError(f"integer deployment needs a model that torch.fx can trace: {err}") from None


def _call_args(node: fx.Node) -> Sequence[Any]:
    """A module call's positional inputs (a single list/tuple argument is the inputs, as for a concat)."""
    return node.args[0] if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) else node.args


def _model_input_readers(model: nn.Module, producers: Collection[str]) -> dict[str, set[int]]:
    """Module -> indices of its inputs that are the model's first input (through grid-preserving operations),
    which QAT's ``inputs_quant`` quantized."""
    leaves = [name for name, module in model.named_modules() if name and not any(True for _ in module.children())]
    graph = trace_model(model, leaf_modules=leaves).graph
    modules = dict(model.named_modules())
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    readers: dict[str, set[int]] = {}
    pending, seen = [placeholder], {placeholder}
    while pending:
        node = pending.pop()
        for user in node.users:
            if user in seen:
                continue
            if _is_grid_preserving(user, modules, (), producers) and user.args and user.args[0] is node:
                seen.add(user)
                pending.append(user)
            elif user.op == "call_module":
                readers.setdefault(str(user.target), set()).update(
                    index for index, arg in enumerate(_call_args(user)) if arg is node)
    return readers


def _integer_layers(model: nn.Module, graph: QuantizationGraph, fake_quants: Mapping[str, FakeLinearQuantization],
                    input_readers: Mapping[str, Collection[int]],
                    weight_bits: Mapping[str, Optional[int]]) -> dict[str, str]:
    """Layers that compute on quantized inputs and whose only consumer is a fake-quantized ReLU -> that ReLU."""
    modules = dict(model.named_modules())
    integer = {}
    for name, relu in graph.relu_after.items():
        module = modules[name]
        if relu is None or relu not in fake_quants or not isinstance(module, _INTEGER_CANDIDATES):
            continue
        if isinstance(module, _WEIGHTED) and weight_bits.get(name) is None:
            continue
        sources = graph.input_sources.get(name, {})
        if all(sources.get(index) in fake_quants or index in input_readers.get(name, ())
               for index in range(graph.num_inputs.get(name, 1))):
            integer[name] = relu
    return integer


def _tracked_range(fq: FakeLinearQuantization) -> dict[str, float]:
    """A statistics record of the range a fake quantization tracked. Only ``min``/``max`` are read (the
    quantizer clips nothing); QAT tracks no mean or spread, recorded as NaN."""
    lo, hi = float(fq.tracked_min), float(fq.tracked_max)
    return {"min": lo, "max": hi, "avg_min": lo, "avg_max": hi, "mean": float("nan"), "std": float("nan")}


def _settings(fake_quants: Mapping[str, FakeLinearQuantization], input_quant: Optional[FakeLinearQuantization],
              input_readers: Mapping[str, Collection[int]], integer: Mapping[str, str], on_grid: Collection[str],
              weight_bits: Mapping[str, Optional[int]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The overrides (one per layer, by exact name) and calibration statistics of the equivalent PTQ model.

    ``on_grid``: the fused activations that keep their layer's output grid (a ReLU), which need no quantization of
    their own; any other fake-quantized activation quantizes its output itself (``fake: true``), also a fused ReLU6,
    whose consumers then read its (identical) parameters, as post-training quantization does.
    """
    overrides: dict[str, dict[str, Any]] = {name: {"bits_weights": bits} for name, bits in weight_bits.items()
                                            if bits is not None}
    stats: dict[str, dict[str, Any]] = {}
    for name, relu in integer.items():
        overrides.setdefault(name, {})["bits_activations"] = fake_quants[relu].num_bits
        inputs = ({index: _tracked_range(input_quant) for index in input_readers.get(name, ())}
                  if input_quant is not None else {})
        stats[name] = {"inputs": inputs, "output": _tracked_range(fake_quants[relu])}
    for name, fq in fake_quants.items():
        if name not in on_grid:
            overrides[name] = {"bits_activations": fq.num_bits, "fake": True}
            stats[name] = {"inputs": {}, "output": _tracked_range(fq)}
    return {re.escape(name): settings for name, settings in overrides.items()}, stats


def _warn_approximations(folds: Collection[tuple[str, str]], args: Mapping[str, Any],
                         input_readers: Mapping[str, Collection[int]], integer: Mapping[str, str]) -> None:
    """Warns where the equivalent model cannot compute exactly what QAT computed."""
    if folds and not args["per_channel_wts"] and not args["fold_bn"]:
        logger.warning("The BatchNorms after %s are folded into per-tensor quantized weights that training "
                       "quantized before the BatchNorm: their rounding differs slightly from the trained model's "
                       "(train with fold_bn: true or per_channel_wts: true for an exact lowering)",
                       ", ".join(repr(layer) for layer, _ in list(folds)[:3]) + (" ..." if len(folds) > 3 else ""))
    float_readers = sorted(name for name in input_readers if name not in integer)
    if float_readers:
        logger.warning("The model input reaches %s in float in the lowered model, which quantization-aware "
                       "training fed the quantized input (inputs_quant)", ", ".join(map(repr, float_readers)))
