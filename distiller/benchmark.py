"""What a compressed model buys: latency, throughput, parameters, MACs and file size, measured side by side.

:func:`measure` times one model, :func:`compare` a dense model against its compressed version (their calls
interleaved, so a machine that slows down or speeds up during the run affects both alike) and
:func:`format_table` prints the result. Latencies are medians of single timed forward passes in eval mode
without autograd, after warm-up passes; on CUDA each pass is synchronised before the clock stops. MACs are
dense-equivalent per sample (:func:`distiller.summaries.compute.model_macs`: zeros still count, thinned
layers count as their smaller shapes). The file size is that of the serialised ``state_dict``.

Example:
    >>> table = compare(dense, thinned, torch.randn(1, 3, 32, 32), batch_sizes=(1, 64))
    >>> print(format_table(table))
"""
from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import pandas as pd
import torch
from tabulate import tabulate
from torch import nn

from .errors import ArgumentError
from .graph.capture import as_input_tuple, eval_mode
from .summaries.compute import model_macs, model_params
from .utils import model_device

__all__ = ["measure", "compare", "format_table", "interleaved_latencies_ms", "state_dict_bytes", "COLUMNS"]

#: The columns of :func:`measure` / :func:`compare` (``compare`` adds ``speedup`` and ``size_ratio``).
COLUMNS = ["model", "batch_size", "latency_ms", "throughput_per_s", "params", "nonzero_params", "macs_per_sample",
           "file_bytes"]

Inputs = Union[torch.Tensor, Sequence[Any]]


def interleaved_latencies_ms(calls: Mapping[str, Callable[[], Any]], device: torch.device, warmup: int = 3,
                             repeats: int = 10) -> dict[str, list[float]]:
    """Times each call ``repeats`` times, in rounds that call each once in turn, after ``warmup`` untimed calls.

    Returns:
        name -> the ``repeats`` durations in milliseconds.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            _synchronize(device)
            start = time.perf_counter()
            call()
            _synchronize(device)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def state_dict_bytes(model: nn.Module) -> int:
    """The size of ``torch.save(model.state_dict())`` in bytes (what a weights file of the model takes)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def measure(model: nn.Module, example_inputs: Inputs, device: Union[str, torch.device, None] = None,
            dtype: Optional[torch.dtype] = None, batch_sizes: Sequence[int] = (1,), *, warmup: int = 3,
            repeats: int = 10) -> pd.DataFrame:
    """Latency and throughput of ``model`` at each batch size, with its parameters, MACs and file size.

    Args:
        model: the model (not changed: a copy is moved when ``device`` or ``dtype`` differ from its own).
        example_inputs: a tensor or tuple of positional inputs whose first dimension is the batch; its first
            sample is repeated to each batch size.
        device: where to run (default: the model's device).
        dtype: floating-point dtype for the model and the floating-point inputs (default: unchanged).
        batch_sizes: batch sizes to time.
        warmup, repeats: untimed and timed forward passes per batch size.
    Returns:
        one row per batch size with the columns :data:`COLUMNS`.
    Raises:
        ArgumentError: no batch size, a batch size below 1, or ``repeats`` below 1.
    """
    return _measure_all({"model": model}, example_inputs, device, dtype, batch_sizes, warmup, repeats)


def compare(dense: nn.Module, compressed: nn.Module, example_inputs: Inputs,
            device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None,
            batch_sizes: Sequence[int] = (1,), *, warmup: int = 3, repeats: int = 10) -> pd.DataFrame:
    """:func:`measure` for a dense model and its compressed version, their forward passes interleaved.

    Returns:
        rows ``dense`` and ``compressed`` per batch size (columns :data:`COLUMNS`), plus ``speedup`` (the
        dense latency over the row's) and ``size_ratio`` (the row's file size over the dense one's).
    """
    table = _measure_all({"dense": dense, "compressed": compressed}, example_inputs, device, dtype, batch_sizes,
                         warmup, repeats)
    dense_rows = table[table["model"] == "dense"].set_index("batch_size")
    table["speedup"] = [dense_rows.at[b, "latency_ms"] / latency
                        for b, latency in zip(table["batch_size"], table["latency_ms"])]
    table["size_ratio"] = table["file_bytes"] / int(dense_rows["file_bytes"].iloc[0])
    return table


def format_table(table: pd.DataFrame) -> str:
    """A :func:`measure` / :func:`compare` table as text."""
    return tabulate(table, headers="keys", tablefmt="psql", showindex=False, floatfmt=".3f", intfmt=",")


def _measure_all(models: Mapping[str, nn.Module], example_inputs: Inputs, device: Union[str, torch.device, None],
                 dtype: Optional[torch.dtype], batch_sizes: Sequence[int], warmup: int, repeats: int) -> pd.DataFrame:
    if not batch_sizes or min(batch_sizes) < 1 or repeats < 1:
        raise ArgumentError(f"benchmark needs batch sizes >= 1 and repeats >= 1, got batch_sizes={list(batch_sizes)}, "
                            f"repeats={repeats}")
    first = next(iter(models.values()))
    target = torch.device(device) if device is not None else model_device(first)
    placed = {name: _placed(model, target, dtype) for name, model in models.items()}
    one = _batch_of(example_inputs, 1, target, dtype)
    static = {name: {"params": model_params(model),
                     "nonzero_params": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
                     "macs_per_sample": model_macs(model, one), "file_bytes": state_dict_bytes(model)}
              for name, model in placed.items()}
    rows = []
    for batch_size in batch_sizes:
        inputs = _batch_of(example_inputs, batch_size, target, dtype)
        calls = {name: _forward(model, inputs) for name, model in placed.items()}
        with torch.no_grad(), contextlib.ExitStack() as modes:
            for model in placed.values():
                modes.enter_context(eval_mode(model))
            times = interleaved_latencies_ms(calls, target, warmup, repeats)
        for name, durations in times.items():
            latency = statistics.median(durations)
            rows.append({"model": name, "batch_size": batch_size, "latency_ms": latency,
                         "throughput_per_s": batch_size * 1000.0 / latency, **static[name]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _forward(model: nn.Module, inputs: tuple[Any, ...]) -> Callable[[], Any]:
    return lambda: model(*inputs)


def _placed(model: nn.Module, device: torch.device, dtype: Optional[torch.dtype]) -> nn.Module:
    """``model`` itself when it is on ``device`` in ``dtype`` already, else a moved copy."""
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    if model_device(model) == device and (dtype is None or all(d == dtype for d in floating)):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def _batch_of(example_inputs: Inputs, batch_size: int, device: torch.device,
              dtype: Optional[torch.dtype]) -> tuple[Any, ...]:
    """The example's first sample repeated ``batch_size`` times, on ``device``, floats in ``dtype``."""
    batch = []
    for x in as_input_tuple(example_inputs, device):
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            x = x[:1].repeat(batch_size, *([1] * (x.dim() - 1)))
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
        batch.append(x)
    return tuple(batch)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
