"""Faster ``nn.Linear`` layers where measurement shows they are faster: FP8 matrix products and int8 weights.

:func:`accelerate_linears` records the input each Linear layer of a model receives on an example batch, and
for each layer tries every requested method on that input:

* ``'fp8'`` / ``'fp8_per_row'``: weights and activations in E4M3 (Micikevicius et al., "FP8 Formats for Deep
  Learning", 2022) with one scale per tensor / per row, multiplied by ``torch._scaled_mm``
  (:class:`~distiller.quantization.FP8LinearWrapper`). Needs a CUDA GPU of compute capability 8.9 or newer
  (Ada, Hopper, Blackwell) and in/out features divisible by 16.
* ``'int8_weight_only'``: int8 weights with one scale per output feature, activations kept in floating point
  (torchao's ``Int8WeightOnlyConfig``; ``pip install 'distiller[int8]'``). Runs on CPU and CUDA; it saves
  memory traffic, so it pays off where the layer is memory-bound (few tokens), mostly under ``torch.compile``.

A method's output must stay within a relative error of the dense layer's (its :attr:`LinearMethod.tolerance`);
the layer and each accepted method are then timed on the recorded input, their calls interleaved, medians
compared. The layer is replaced, in the model itself, by the fastest method if that one is more than
``min_speedup`` times faster than the dense layer, and left dense otherwise; the report says per layer what was
tried and why it was (not) converted. A replacement is built from a copy of the layer, so parameters the layer
shared with another module (tied weights) are no longer shared. The input of every layer is held during the
call (one tensor per layer).
"""
from __future__ import annotations

import copy
import functools
import importlib
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import pandas as pd
import torch
from tabulate import tabulate
from torch import nn

from ...benchmark import interleaved_latencies_ms
from ...errors import ArgumentError, MissingDependencyError, UnmatchedNameError, suggest
from ...graph.capture import record_first_inputs
from ...graph.cost import LAYER_WRAPPERS
from ...spec import NonNegativeInt, PositiveInt, PositiveReal, validated
from ..fp8 import FP8LinearWrapper, fp8_scaled_mm_supported
from .inductor import INT8_INSTALL_HINT

__all__ = ["accelerate_linears", "LinearMethod", "LINEAR_METHODS", "MethodTrial", "LinearAcceleration",
           "acceleration_table", "format_accelerations", "Timer"]

#: ``timer(calls, device) -> name -> median milliseconds``: how :func:`accelerate_linears` times the variants
#: of one layer (``calls`` holds ``'dense'`` and each candidate method).
Timer = Callable[[Mapping[str, Callable[[], Any]], torch.device], Mapping[str, float]]


@dataclass(frozen=True)
class LinearMethod:
    """One way of running an ``nn.Linear`` faster.

    Attributes:
        name: the key in :data:`LINEAR_METHODS`.
        unavailable: ``(layer, input) -> reason`` why the method cannot run the layer here, or None.
        convert: ``layer -> module`` computing the same function faster (given a copy it may change).
        tolerance: the largest relative error ``||y - y_dense|| / ||y_dense||`` accepted on the recorded input.
    """

    name: str
    unavailable: Callable[[nn.Linear, torch.Tensor], Optional[str]]
    convert: Callable[[nn.Linear], nn.Module]
    tolerance: float


@dataclass(frozen=True)
class MethodTrial:
    """What happened to one method on one layer.

    Attributes:
        method: the method's name.
        outcome: ``'chosen'``, or why not (unavailable, refused by the kernel, too inaccurate, slower, ...).
        converted_ms: median latency of the converted layer (None when not timed).
        relative_error: ``||y - y_dense|| / ||y_dense||`` on the recorded input (None when not run).
    """

    method: str
    outcome: str
    converted_ms: Optional[float] = None
    relative_error: Optional[float] = None


@dataclass(frozen=True)
class LinearAcceleration:
    """One Linear layer's outcome in :func:`accelerate_linears`.

    Attributes:
        name: the layer's name in the model.
        input_shape: shape of the input it received on the example (None when it was not called).
        dtype: its weight's dtype.
        method: the method it was converted with, or None when it stays dense.
        reason: why (or why not) it was converted.
        dense_ms: median latency of the dense layer on its input (None when not timed).
        trials: what each requested method gave.
    """

    name: str
    input_shape: Optional[tuple[int, ...]]
    dtype: str
    method: Optional[str]
    reason: str
    dense_ms: Optional[float] = None
    trials: tuple[MethodTrial, ...] = ()

    @property
    def converted_ms(self) -> Optional[float]:
        """Median latency of the chosen method (None when the layer stays dense)."""
        return next((t.converted_ms for t in self.trials if t.method == self.method), None)

    @property
    def speedup(self) -> Optional[float]:
        """Dense over converted latency of the chosen method (None when the layer stays dense)."""
        converted = self.converted_ms
        return None if converted is None or self.dense_ms is None else self.dense_ms / converted


def _fp8_unavailable(layer: nn.Linear, x: torch.Tensor) -> Optional[str]:
    if not fp8_scaled_mm_supported(x.device):
        where = (f"{torch.cuda.get_device_name(x.device)}: "
                 f"{'.'.join(map(str, torch.cuda.get_device_capability(x.device)))}" if x.device.type == "cuda"
                 else f"the layer runs on {x.device.type}")
        return f"unavailable: FP8 matrix products need CUDA compute capability >= 8.9 ({where})"
    if layer.in_features % 16 or layer.out_features % 16:
        return (f"unavailable: torch._scaled_mm needs in and out features divisible by 16, the layer has "
                f"{layer.in_features} -> {layer.out_features}")
    return None


@functools.cache
def _torchao_int8_weight_only() -> Optional[tuple[Callable[..., Any], type]]:
    """torchao's ``(quantize_, Int8WeightOnlyConfig)``, or None when torchao is not installed."""
    try:
        quantization = importlib.import_module("torchao.quantization")
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("torchao"):
            raise  # torchao is there but something it needs is broken: not a missing optional package
        return None
    return quantization.quantize_, quantization.Int8WeightOnlyConfig


def _int8_weight_only_unavailable(layer: nn.Linear, x: torch.Tensor) -> Optional[str]:
    if _torchao_int8_weight_only() is None:
        return f"unavailable: torchao is not installed ({INT8_INSTALL_HINT})"
    return None


def _int8_weight_only(layer: nn.Linear) -> nn.Module:
    torchao = _torchao_int8_weight_only()
    assert torchao is not None, "checked by _int8_weight_only_unavailable"
    quantize, config = torchao
    # set_inductor_config=False: leave the process-wide inductor settings to the caller
    quantize(layer, config(set_inductor_config=False))
    return layer


#: The methods by name. FP8 tolerances are about twice E4M3's typical error on both operands (~3.5%).
LINEAR_METHODS: dict[str, LinearMethod] = {
    "fp8": LinearMethod("fp8", _fp8_unavailable, lambda layer: FP8LinearWrapper(layer, "per_tensor"), 0.08),
    "fp8_per_row": LinearMethod("fp8_per_row", _fp8_unavailable, lambda layer: FP8LinearWrapper(layer, "per_row"),
                                0.08),
    "int8_weight_only": LinearMethod("int8_weight_only", _int8_weight_only_unavailable, _int8_weight_only, 0.02),
}


@validated
def accelerate_linears(model: nn.Module, example_inputs: Union[torch.Tensor, Sequence[Any]], *,
                       methods: Sequence[str] = ("fp8", "fp8_per_row", "int8_weight_only"),
                       names: Optional[Sequence[str]] = None, min_speedup: PositiveReal = 1.0,
                       max_relative_error: Optional[PositiveReal] = None, warmup: NonNegativeInt = 5,
                       repeats: PositiveInt = 20, compiled: bool = False,
                       timer: Optional[Timer] = None) -> list[LinearAcceleration]:
    """Replaces, in place, each Linear layer of ``model`` by its fastest converted form where that is faster.

    Args:
        model: the model, on the device and in the dtype it will run in (e.g. ``.to('cuda', torch.bfloat16)``
            for FP8). Linear layers held by a quantization wrapper (already quantized) are left alone.
        example_inputs: a tensor or tuple of positional inputs, at the batch size (and number of tokens) the
            model will serve: each layer is timed on the input it receives there.
        methods: the methods to try, keys of :data:`LINEAR_METHODS` (add a :class:`LinearMethod` there to try
            your own).
        names: the Linear layers to consider (default: all).
        min_speedup: a layer is converted only when its fastest method is more than this many times faster.
        max_relative_error: overrides every method's :attr:`LinearMethod.tolerance`.
        warmup, repeats: untimed and timed calls per layer and variant.
        compiled: time the dense and converted layers compiled by ``torch.compile`` (``dynamic=False``), as they
            run in a compiled model; int8 weight-only pays off only there (eager, it casts the weight on every
            call). The layers put into the model are not compiled: compile the model afterwards.
        timer: ``timer(calls, device) -> name -> median ms`` (default: interleaved medians of ``repeats`` calls
            after ``warmup``, synchronising CUDA).
    Returns:
        one :class:`LinearAcceleration` per Linear layer considered, in model order.
    Raises:
        ArgumentError: a bad argument (unknown method, ``min_speedup <= 0``, ...) or a ``names`` entry that is
            not a Linear layer.
        UnmatchedNameError: a ``names`` entry that is no module of the model.
        MissingDependencyError: only int8 weight-only was asked for and torchao is not installed.

    Example:
        >>> report = accelerate_linears(model, torch.randn(8, 128, 4096, device="cuda", dtype=torch.bfloat16))
        >>> print(format_accelerations(report))
    """
    _check_methods(methods)
    layers = _layers_to_consider(model, names)
    if list(methods) == ["int8_weight_only"] and _torchao_int8_weight_only() is None:
        raise MissingDependencyError(f"int8 weight-only Linear layers need torchao: {INT8_INSTALL_HINT}")
    time_calls = timer or functools.partial(_median_latencies_ms, warmup=warmup, repeats=repeats)
    inputs = record_first_inputs(model, example_inputs, [name for name, (_, skip) in layers.items() if skip is None])
    tried = [LINEAR_METHODS[method] for method in dict.fromkeys(methods)]
    report = []
    for name, (layer, skip) in layers.items():
        if skip is not None:
            report.append(LinearAcceleration(name, None, _dtype_name(layer), None, skip))
            continue
        outcome, replacement = _accelerate_layer(name, layer, inputs.get(name), tried, min_speedup, max_relative_error,
                                                 time_calls, compiled)
        if replacement is not None:
            model.set_submodule(name, replacement)
        report.append(outcome)
    return report


def _check_methods(methods: Sequence[str]) -> None:
    if not methods:
        raise ArgumentError(f"methods is empty: name at least one of {list(LINEAR_METHODS)}", argument="methods")
    for method in methods:
        if method not in LINEAR_METHODS:
            hint = suggest(method, LINEAR_METHODS)
            raise ArgumentError(f"methods: unknown method '{method}'" + (f"; did you mean {hint}?" if hint else "")
                                + f" (known: {', '.join(LINEAR_METHODS)})", argument="methods")


def _layers_to_consider(model: nn.Module, names: Optional[Sequence[str]]) -> dict[str, tuple[nn.Linear, Optional[str]]]:
    """name -> (Linear layer, why it is skipped or None), checked before any work."""
    if isinstance(model, nn.Linear):
        raise ArgumentError("model is a bare nn.Linear, which cannot be replaced in place: wrap it, e.g. "
                            "nn.Sequential(layer)", argument="model")
    modules = dict(model.named_modules())
    wrapped = {id(getattr(m, attribute)): type(m).__name__ for m in modules.values()
               for cls, attribute in LAYER_WRAPPERS.items() if isinstance(m, cls)}
    if names is None:
        names = [name for name, module in modules.items() if isinstance(module, nn.Linear)]
    layers = {}
    for name in names:
        if name not in modules:
            raise UnmatchedNameError(name, [n for n, m in modules.items() if isinstance(m, nn.Linear)], "Linear layer")
        layer = modules[name]
        if not isinstance(layer, nn.Linear):
            raise ArgumentError(f"names: '{name}' is a {type(layer).__name__}, not an nn.Linear: only Linear layers "
                                "can be accelerated", argument="names")
        skip = None
        if id(layer) in wrapped:
            skip = f"held by a {wrapped[id(layer)]}: already quantized"
        elif type(layer.weight) not in (nn.Parameter, torch.Tensor):
            skip = f"weight is already a {type(layer.weight).__name__}"
        layers[name] = (layer, skip)
    return layers


def _dtype_name(layer: nn.Linear) -> str:
    return str(layer.weight.dtype).removeprefix("torch.")


def _accelerate_layer(name: str, layer: nn.Linear, x: Optional[torch.Tensor], methods: Sequence[LinearMethod],
                      min_speedup: float, max_relative_error: Optional[float],
                      time_calls: Timer, compiled: bool) -> tuple[LinearAcceleration, Optional[nn.Module]]:
    """The layer's outcome and the module replacing it (None: it stays dense)."""
    dtype = _dtype_name(layer)
    if x is None:
        return LinearAcceleration(name, None, dtype, None, "not called on the example inputs"), None
    shape = tuple(x.shape)
    with torch.no_grad():
        dense_out = layer(x)
        trials: dict[str, MethodTrial] = {}
        candidates: dict[str, nn.Module] = {}
        for tried in methods:
            trials[tried.name], converted = _try_method(tried, layer, x, dense_out, max_relative_error)
            if converted is not None:
                candidates[tried.name] = converted
        if not candidates:
            return LinearAcceleration(name, shape, dtype, None, "no method could run it",
                                      trials=tuple(trials.values())), None
        medians = _timed({"dense": layer, **candidates}, x, time_calls, compiled)
    dense_ms = medians["dense"]
    best = min(candidates, key=lambda method: medians[method])
    best_speedup = dense_ms / medians[best]
    for method in candidates:
        speedup = dense_ms / medians[method]
        outcome = ("chosen" if method == best and best_speedup > min_speedup
                   else f"{speedup:.2f}x" + (f", slower than {best}" if method != best else
                                             f", not above min_speedup {min_speedup}x"))
        trials[method] = MethodTrial(method, outcome, medians[method], trials[method].relative_error)
    if best_speedup > min_speedup:
        return (LinearAcceleration(name, shape, dtype, best, f"{best} {best_speedup:.2f}x faster", dense_ms,
                                   tuple(trials.values())), candidates[best])
    return (LinearAcceleration(name, shape, dtype, None, f"fastest method {best} gives {best_speedup:.2f}x, not above "
                               f"min_speedup {min_speedup}x", dense_ms, tuple(trials.values())), None)


def _try_method(method: LinearMethod, layer: nn.Linear, x: torch.Tensor, dense_out: torch.Tensor,
                max_relative_error: Optional[float]) -> tuple[MethodTrial, Optional[nn.Module]]:
    """The method's trial before timing, and the converted copy of ``layer`` if it is accurate enough."""
    reason = method.unavailable(layer, x)
    if reason is not None:
        return MethodTrial(method.name, reason), None
    try:
        converted = method.convert(copy.deepcopy(layer))
        out = converted(x)
    except RuntimeError as err:    # a shape or dtype the kernel refuses: reported, not fatal
        return MethodTrial(method.name, f"refused: {str(err).splitlines()[0]}"), None
    error = _relative_error(out, dense_out)
    tolerance = max_relative_error if max_relative_error is not None else method.tolerance
    if not error <= tolerance:    # NaN fails too
        return MethodTrial(method.name, f"relative error {error:.4f} above tolerance {tolerance}",
                           relative_error=error), None
    return MethodTrial(method.name, "accurate", relative_error=error), converted


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.float()
    return ((out.float() - reference).norm() / reference.norm().clamp(min=torch.finfo(torch.float32).tiny)).item()


_UNLIMITED = 1 << 30


def _timed(modules: Mapping[str, nn.Module], x: torch.Tensor, time_calls: Timer, compiled: bool) -> Mapping[str, float]:
    """Median ms of each module called on ``x`` (compiled by ``torch.compile`` first when ``compiled``)."""
    if not compiled:
        return time_calls({name: functools.partial(module, x) for name, module in modules.items()}, x.device)
    calls = {name: functools.partial(torch.compile(module, dynamic=False), x) for name, module in modules.items()}
    # every Linear shares nn.Linear.forward, whose compiled versions (one per shape, dtype and weight type)
    # dynamo caches together: with its default limit of 8 it would silently run later variants eagerly
    with torch._dynamo.config.patch(recompile_limit=_UNLIMITED, accumulated_recompile_limit=_UNLIMITED):
        return time_calls(calls, x.device)


def _median_latencies_ms(calls: Mapping[str, Callable[[], Any]], device: torch.device, warmup: int,
                         repeats: int) -> dict[str, float]:
    times = interleaved_latencies_ms(calls, device, warmup, repeats)
    return {name: statistics.median(durations) for name, durations in times.items()}


def acceleration_table(report: Sequence[LinearAcceleration]) -> pd.DataFrame:
    """One row per layer and method tried (one row for a layer that was skipped): the layer, its input shape and
    dtype, the method, dense and converted median ms, speedup, relative error, the method's outcome, and the
    layer's decision (the method it was converted with, or ``'dense'``)."""
    rows = []
    for layer in report:
        base = {"layer": layer.name, "input_shape": "x".join(map(str, layer.input_shape or ())), "dtype": layer.dtype,
                "dense_ms": layer.dense_ms}
        decision = layer.method or "dense"
        if not layer.trials:
            rows.append({**base, "outcome": layer.reason, "decision": decision})
        for trial in layer.trials:
            speedup = layer.dense_ms / trial.converted_ms if layer.dense_ms and trial.converted_ms else None
            rows.append({**base, "method": trial.method, "converted_ms": trial.converted_ms, "speedup": speedup,
                         "relative_error": trial.relative_error, "outcome": trial.outcome, "decision": decision})
    return pd.DataFrame(rows, columns=["layer", "input_shape", "dtype", "method", "dense_ms", "converted_ms", "speedup",
                                       "relative_error", "outcome", "decision"])


def format_accelerations(report: Sequence[LinearAcceleration]) -> str:
    """:func:`acceleration_table` as text (``-`` where a value does not apply)."""
    table = acceleration_table(report)
    return tabulate(table.astype(object).where(table.notna(), None), headers="keys", tablefmt="psql",
                    showindex=False, floatfmt=".4g", missingval="-")
