"""Data-flow facts that post-training quantization needs, read from the model's torch.fx graph.

* which module produced each input of a module, looking through operations that keep values on the
  producer's quantization grid (ReLU, max-pooling, reshapes, dropout, identity): such an input is
  quantized with the producer's output parameters, so no value is quantized twice (and an integer
  deployment needs no requantization there);
* which modules feed a ReLU or ReLU6 as their only consumer: their output range is the activation's
  ("activation fusion", as in Jacob et al. 2018, section 3), which doubles the resolution of a symmetric range
  and matches fused conv+ReLU / conv+ReLU6 kernels. The activation then keeps values on the layer's grid: its
  range lies within [0, 6] (it is the ReLU6's own output range), so the clamp at 6 never cuts a grid value and
  the clamp at 0 lands on one;
* BatchNorm layers that can be folded into the convolution/linear layer before them (the graph, not
  module names or order, decides; see :func:`distiller.quantization.bn_fold.find_batchnorm_pairs`).
"""
from __future__ import annotations

import copy
import logging
import math
import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from torch.nn.modules.batchnorm import _BatchNorm

from ... import modules as distiller_modules
from ...graph import GraphCaptureError, trace_model
from ..bn_fold import FoldableLayer

__all__ = ["QuantizationGraph", "analyze_model", "effective_stats", "fold_batch_norm", "fusable_activation",
           "GRID_PRESERVING_MODULES", "SAME_RANGE_AS_INPUT_MODULES", "RELU6_BOUND"]

logger = logging.getLogger(__name__)

#: Modules whose output values lie on their input's quantization grid.
GRID_PRESERVING_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.Identity, nn.Dropout,
                           nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Flatten, nn.Unflatten)
#: Modules that integer kernels run with the input's quantization parameters for the output.
SAME_RANGE_AS_INPUT_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                               nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
GRID_PRESERVING_FUNCTIONS = {torch.relu, F.relu, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
                             torch.transpose, torch.permute, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.dropout,
                             operator.getitem}
GRID_PRESERVING_METHODS = {"relu", "relu_", "view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose",
                           "permute", "contiguous"}
_RELU_FUNCTIONS = {torch.relu, F.relu}
_RELU_METHODS = {"relu", "relu_"}
#: The upper bound of ReLU6, the bounded activation that fuses into the layer before it.
RELU6_BOUND = 6.0
_PASS_THROUGH_MODULES = (nn.Identity, nn.Dropout)

_DISTILLER_MODULE_TYPES = tuple(cls for cls in vars(distiller_modules).values()
                                if isinstance(cls, type) and issubclass(cls, nn.Module))


@dataclass
class QuantizationGraph:
    """What :func:`analyze_model` found (module names as in ``model.named_modules()``).

    Attributes:
        traced: False when torch.fx could not trace the model (all other fields are then empty).
        order: called modules in execution order.
        num_inputs: module -> number of positional inputs.
        input_sources: module -> {input index: producing module}.
        relu_after: module (not an identity) -> the ReLU or ReLU6 module that is its only consumer (None for a
            functional one).
        relu6_after: the modules of ``relu_after`` whose activation is a ReLU6.
    """
    traced: bool = False
    order: list[str] = field(default_factory=list)
    num_inputs: dict[str, int] = field(default_factory=dict)
    input_sources: dict[str, dict[int, str]] = field(default_factory=dict)
    relu_after: dict[str, Optional[str]] = field(default_factory=dict)
    relu6_after: set[str] = field(default_factory=set)


def _is_grid_preserving(node: fx.Node, modules: dict[str, nn.Module], pass_through: Collection[str],
                        producers: Collection[str] = ()) -> bool:
    if node.op == "call_module":
        return node.target in pass_through or (node.target not in producers
                                               and isinstance(modules[str(node.target)], GRID_PRESERVING_MODULES))
    if node.op == "call_function":
        return node.target in GRID_PRESERVING_FUNCTIONS
    return node.op == "call_method" and node.target in GRID_PRESERVING_METHODS


def fusable_activation(node: fx.Node, modules: Mapping[str, nn.Module]) -> Optional[float]:
    """The upper bound of ``node`` if it is a ReLU (``math.inf``) or a ReLU6 (6) that fuses into the layer before
    it, else None. A module counts by its type, also inside a quantization wrapper (``wrapped_module``)."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        module = getattr(module, "wrapped_module", module)
        if isinstance(module, nn.ReLU):
            return math.inf
        return RELU6_BOUND if isinstance(module, nn.ReLU6) else None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return math.inf
        return RELU6_BOUND if node.target is F.relu6 else None
    return math.inf if node.op == "call_method" and node.target in _RELU_METHODS else None


def _producer(node: Any, modules: dict[str, nn.Module], calls: dict[str, int], pass_through: Collection[str],
              producers: Collection[str]) -> Optional[str]:
    """The module whose output reaches ``node`` through grid-preserving operations, or None."""
    while isinstance(node, fx.Node):
        preserving = _is_grid_preserving(node, modules, pass_through, producers)
        if node.op == "call_module" and not preserving:
            return str(node.target) if calls[str(node.target)] == 1 else None
        if not preserving or not node.args:
            return None
        node = node.args[0]
    return None


def _single_relu_consumer(node: fx.Node, modules: dict[str, nn.Module],
                          pass_through: Collection[str]) -> tuple[Optional[float], Optional[str]]:
    """(upper bound, activation name or None) if ``node``'s only consumer (through identities) is a ReLU or
    ReLU6 (see :func:`fusable_activation`), else (None, None)."""
    while len(node.users) == 1:
        (user,) = node.users
        bound = fusable_activation(user, modules)
        if bound is not None:
            return bound, str(user.target) if user.op == "call_module" else None
        if not (user.op == "call_module" and (user.target in pass_through
                                              or isinstance(modules[str(user.target)], _PASS_THROUGH_MODULES))):
            break
        node = user
    return None, None


def analyze_model(model: nn.Module, pass_through: Collection[str] = (),
                  producers: Collection[str] = ()) -> QuantizationGraph:
    """Traces ``model`` (leaves: torch layers, ``distiller.modules``, childless modules) and returns the
    :class:`QuantizationGraph`; an untraceable model gives ``traced=False`` and a logged reason.

    Args:
        pass_through: names of modules to treat as identities (BatchNorms about to be folded).
        producers: names of grid-preserving modules that quantize their output anyway (``fake: true``), so
            their consumers' inputs come from them, not from what they read.
    """
    pass_through, producers = set(pass_through), set(producers)
    leaves = [name for name, module in model.named_modules() if name and not any(True for _ in module.children())]
    try:
        graph = trace_model(model, leaf_modules=leaves + list(_DISTILLER_MODULE_TYPES)).graph
    except GraphCaptureError as err:
        logger.warning("Post-training quantization: %s. Layers will quantize their inputs with their own ranges "
                       "and no activation fusion or integer conversion is available.", err)
        return QuantizationGraph()
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    result = QuantizationGraph(traced=True)
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        name = str(node.target)
        args = node.args[0] if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) else node.args
        result.order.append(name)
        result.num_inputs[name] = len(args)
        if calls[name] > 1:
            continue
        sources = {i: _producer(arg, modules, calls, pass_through, producers) for i, arg in enumerate(args)}
        result.input_sources[name] = {i: src for i, src in sources.items() if src is not None}
        bound, relu = _single_relu_consumer(node, modules, pass_through)
        if bound is not None and name not in pass_through and not isinstance(modules[name], _PASS_THROUGH_MODULES):
            result.relu_after[name] = relu
            if bound == RELU6_BOUND:
                result.relu6_after.add(name)
    return result


def _relu_clipped(stats: Mapping[str, float], upper: float = math.inf) -> dict[str, float]:
    """Statistics of ReLU(x) (``upper``: ReLU6's 6) approximated from those of x (for a functional activation
    with no statistics of its own)."""
    clipped = dict(stats)
    for key in ("min", "max", "avg_min", "avg_max"):
        clipped[key] = min(max(stats[key], 0.0), upper)
    return clipped


def effective_stats(stats: Mapping[str, Mapping[str, Any]], folds: Collection[tuple[str, str]],
                    graph: QuantizationGraph) -> dict[str, dict[str, Any]]:
    """Calibration statistics (``{module: {'inputs': {index: stats}, 'output': stats}}``) as the prepared layers
    see them: a layer with a BatchNorm folded in (``folds``: (layer, BatchNorm) pairs) has the BatchNorm's output
    range, a layer followed only by a ReLU or ReLU6 has the activation's. A copy with integer input indices."""
    result: dict[str, dict[str, Any]] = {
        name: {"inputs": {int(i): rec for i, rec in (entry.get("inputs") or {}).items()},
               "output": entry.get("output")}
        for name, entry in copy.deepcopy(dict(stats)).items()}
    for layer, bn in folds:
        if layer in result and result.get(bn, {}).get("output"):
            result[layer]["output"] = result[bn]["output"]
    for name, relu in graph.relu_after.items():
        if name in result and result[name]["output"]:
            relu_out = result.get(relu, {}).get("output") if relu else None
            upper = RELU6_BOUND if name in graph.relu6_after else math.inf
            result[name]["output"] = relu_out or _relu_clipped(result[name]["output"], upper)
    return result


def fold_batch_norm(layer: FoldableLayer, bn: _BatchNorm) -> None:
    """Folds ``bn`` (eval statistics) into the conv/linear ``layer`` that feeds it, in place.

    ``W' = W * gamma / sqrt(var + eps)`` per output channel and ``b' = (b - mean) * gamma / sqrt(var + eps)
    + beta`` (Jacob et al. 2018, section 3.2). The layer gains a bias if it had none.
    """
    running_mean, running_var = bn.running_mean, bn.running_var
    if running_mean is None or running_var is None:
        raise TypeError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    with torch.no_grad():
        gamma = bn.weight if bn.affine else torch.ones_like(running_var)
        beta = bn.bias if bn.affine else torch.zeros_like(running_var)
        factor = gamma / torch.sqrt(running_var + bn.eps)
        layer.weight.mul_(factor.reshape(-1, *([1] * (layer.weight.dim() - 1))).to(layer.weight.dtype))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(running_mean)
        folded_bias = (bias - running_mean) * factor + beta
        if layer.bias is None:
            layer.bias = nn.Parameter(folded_bias.to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
        else:
            layer.bias.copy_(folded_bias)
