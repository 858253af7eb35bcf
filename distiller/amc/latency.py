"""Latency as AMC's budget: a per-layer latency table measured on the run's device, and the network
latency it predicts for any set of kept channels.

Each convolution and fully connected layer is timed alone, at the requested batch size, for a grid of
input and output widths (from the narrowest the search can reach to the dense width); layers of the same
configuration are timed once. A network's latency is predicted as the sum of its layers' latencies,
interpolated bilinearly between grid widths (as NetAdapt's per-layer look-up tables, Yang et al., ECCV
2018), scaled by the ratio of the dense network's measured latency to its layers' sum: the time of
everything else (normalisations, activations, additions, pooling, the Python calls) is taken to shrink with
the layers. (A separate constant and per-activation term, fitted on two measured networks, was tried: on a
loaded machine the fit turned negative; one ratio stays positive and monotone.) The table is saved as JSON
and reloaded when the model, batch size, device and thread count match.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

import torch
import torch.utils.benchmark
from torch import nn

from ..errors import ArgumentError, InputFileError
from .costs import LayerCost, LayerCosts

msglogger = logging.getLogger(__name__)

__all__ = ["LatencyModel", "batched", "build_latency_table", "load_or_build_latency_table", "measure_latency",
           "TABLE_NAME"]

#: The file name of the table in a run directory.
TABLE_NAME = "latency_table.json"


def measure_latency(module: nn.Module, inputs: torch.Tensor, min_run_time: float = 0.05) -> float:
    """The seconds of ``module(inputs)``: the fastest of ``torch.utils.benchmark``'s blocks of calls (the
    least disturbed by other processes on a shared machine; inference mode, the process's thread count,
    CUDA synchronised)."""
    timer = torch.utils.benchmark.Timer(stmt="module(inputs)", globals={"module": module, "inputs": inputs},
                                        num_threads=torch.get_num_threads())
    with torch.inference_mode():
        module(inputs)  # warm-up (lazy initialisation, allocator)
        return float(min(timer.blocked_autorange(min_run_time=min_run_time).times))


def _grid(dense: int, narrowest: int, levels: int, multiple: int) -> list[int]:
    """``levels`` widths from ``narrowest`` to ``dense`` (multiples of ``multiple``), ascending."""
    if narrowest >= dense or levels < 2:
        return [dense]
    points = {dense, max(multiple, narrowest // multiple * multiple)}
    for i in range(1, levels - 1):
        width = narrowest + (dense - narrowest) * i / (levels - 1)
        points.add(max(multiple, round(width / multiple) * multiple))
    return sorted(points)


def _resized(module: nn.Module, name: str, width_in: int, width_out: int) -> nn.Module:
    """A fresh layer configured as ``module`` with ``width_in`` input and ``width_out`` output channels."""
    if isinstance(module, nn.Linear):
        return nn.Linear(width_in, width_out, bias=module.bias is not None)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        config: dict[str, Any] = {"kernel_size": module.kernel_size, "stride": module.stride,
                                  "padding": module.padding, "dilation": module.dilation,
                                  "groups": width_out if depthwise else module.groups,
                                  "bias": module.bias is not None, "padding_mode": module.padding_mode}
        return type(module)(width_in, width_out, **config)
    raise ArgumentError(f"latency-constrained AMC times convolutions and linear layers; '{name}' is a "
                        f"{type(module).__name__}: use the MAC-constrained protocol for this model")


def _layer_key(layer: LayerCost, grid_in: list[int], grid_out: list[int]) -> str:
    module = layer.module
    config = {attr: getattr(module, attr) for attr in ("kernel_size", "stride", "padding", "dilation", "groups")
              if hasattr(module, attr)}
    return json.dumps([type(module).__name__, config, list(layer.input_shape[2:] if not isinstance(
        module, nn.Linear) else layer.input_shape[1:-1]), layer.depthwise, grid_in, grid_out])


def _time_layer(layer: LayerCost, grid_in: list[int], grid_out: list[int], batch_size: int,
                device: torch.device, min_run_time: float) -> list[list[float]]:
    """Seconds per ``(input width, output width)`` of the grid, made non-decreasing along both widths (a
    wider layer is never faster: what timing noise says otherwise is measurement error, and the budget
    clipping needs a cost that falls as channels go)."""
    seconds = []
    for width_in in grid_in:
        row = []
        for width_out in grid_out:
            if layer.depthwise:
                width_in = width_out
            module = _resized(layer.module, layer.name, width_in, width_out).to(device).eval()
            if isinstance(layer.module, nn.Linear):
                shape = (batch_size, *layer.input_shape[1:-1], width_in)
            else:
                shape = (batch_size, width_in, *layer.input_shape[2:])
            row.append(measure_latency(module, torch.randn(shape, device=device), min_run_time))
        seconds.append(row)
    return torch.tensor(seconds).cummax(0).values.cummax(1).values.tolist()


def _grids(layer: LayerCost, narrowest: torch.Tensor, levels: int) -> tuple[list[int], list[int]]:
    dense_in, dense_out = layer.dense_widths
    low_in, low_out = layer.widths(narrowest)
    groups = 1 if layer.depthwise else getattr(layer.module, "groups", 1)
    grid_out = _grid(dense_out, low_out, levels, groups)
    grid_in = [dense_in] if layer.depthwise else _grid(dense_in, low_in, levels, groups)
    return grid_in, grid_out


def _signature(costs: LayerCosts, batch_size: int, device: torch.device) -> dict[str, Any]:
    return {"batch_size": batch_size, "device": str(device), "threads": torch.get_num_threads(),
            "layers": [[layer.name, list(layer.dense_widths), list(layer.input_shape)] for layer in costs.layers]}


def batched(example_input: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``example_input`` (a batch of one) repeated to ``batch_size`` samples."""
    return example_input[:1].expand(batch_size, *example_input.shape[1:]).contiguous()


def build_latency_table(model: nn.Module, example_input: torch.Tensor, costs: LayerCosts, narrowest: torch.Tensor,
                        batch_size: int, levels: int = 6, min_run_time: float = 0.05) -> dict[str, Any]:
    """Times every counted layer of ``costs`` on a grid of widths, and the dense network.

    Args:
        model: the dense model (timed whole, on its device).
        example_input: its input, a batch of one.
        costs: its :class:`LayerCosts`.
        narrowest: the kept channels (bool per channel id) of the smallest network the search can reach.
        batch_size: the batch size to time at.
        levels: grid widths per dimension.
        min_run_time: seconds of repeated calls per measurement.
    Returns:
        the table (plain data, see :class:`LatencyModel`).
    Raises:
        ArgumentError: a layer type that cannot be timed alone (named).
    """
    device = next(model.parameters()).device
    measured: dict[str, list[list[float]]] = {}
    layers = {}
    for layer in costs.layers:
        grid_in, grid_out = _grids(layer, narrowest, levels)
        key = _layer_key(layer, grid_in, grid_out)
        if key not in measured:
            measured[key] = _time_layer(layer, grid_in, grid_out, batch_size, device, min_run_time)
        layers[layer.name] = {"in": grid_in, "out": grid_out, "seconds": measured[key]}
    inputs = batched(example_input, batch_size).to(device)
    network = min(measure_latency(model.eval(), inputs, min_run_time * 4) for _ in range(3))  # as amc.py's final check
    msglogger.info("Latency table: %d layers (%d configurations timed) at batch size %d on %s; dense network "
                   "%.3f ms", len(layers), len(measured), batch_size, device, 1e3 * network)
    return {**_signature(costs, batch_size, device), "network_seconds": network, "table": layers}


def load_or_build_latency_table(path: str, model: nn.Module, example_input: torch.Tensor, costs: LayerCosts,
                                narrowest: torch.Tensor, batch_size: int, levels: int = 6,
                                source: Optional[str] = None) -> dict[str, Any]:
    """The table cached at ``path`` (or given as ``source``) when it was measured for this model, batch
    size, device and thread count; otherwise a new one, saved to ``path``.

    Raises:
        InputFileError: ``source`` does not exist or is not a table.
        ArgumentError: ``source`` was measured for another model, batch size, device or thread count.
    """
    device = next(model.parameters()).device
    signature = _signature(costs, batch_size, device)
    for candidate in (source, path):
        if candidate is None or (candidate == path and not os.path.isfile(path)):
            continue
        try:
            with open(candidate) as f:
                table = json.load(f)
        except (OSError, ValueError) as err:
            raise InputFileError(f"latency table '{candidate}' cannot be read as JSON ({err})") from None
        differs = [key for key in signature if table.get(key) != signature[key]]
        if not differs:
            msglogger.info("Latency table loaded from %s", candidate)
            if candidate != path:
                with open(path, "w") as f:
                    json.dump(table, f)
            return table
        if candidate == source:
            raise ArgumentError(f"latency table '{source}' was measured for another run setting (it differs in: "
                                f"{', '.join(differs)}); drop it to measure a new table")
    table = build_latency_table(model, example_input, costs, narrowest, batch_size, levels)
    with open(path, "w") as f:
        json.dump(table, f)
    return table


def _interpolate(grid: list[int], values: torch.Tensor, width: float) -> torch.Tensor:
    """Linear interpolation of ``values`` (rows per ``grid`` width) at ``width`` (clamped to the grid)."""
    if len(grid) == 1:
        return values[0]
    points = torch.tensor(grid, dtype=torch.float64)
    upper = int(torch.searchsorted(points, torch.tensor(width, dtype=torch.float64)).clamp(1, len(grid) - 1))
    share = float((width - points[upper - 1]) / (points[upper] - points[upper - 1]))
    share = min(max(share, 0.0), 1.0)
    return values[upper - 1] * (1 - share) + values[upper] * share


class LatencyModel:
    """Predicts the latency (seconds per batch) of the network keeping some channels.

    Args:
        costs: the model's :class:`LayerCosts`.
        table: :func:`build_latency_table`'s result.
    """

    def __init__(self, costs: LayerCosts, table: dict[str, Any]) -> None:
        self.costs = costs
        self.table = {name: (entry["in"], entry["out"], torch.tensor(entry["seconds"], dtype=torch.float64))
                      for name, entry in table["table"].items()}
        dense = self._layers([list(layer.dense_widths) for layer in costs.layers])
        #: The dense network's measured latency over the sum of its layers' (applied to every prediction).
        self.scale = float(table["network_seconds"]) / dense

    def _layers(self, widths: list[list[int]]) -> float:
        return sum(self.layer_latency(layer, *pair) for layer, pair in zip(self.costs.layers, widths))

    def layer_latency(self, layer: LayerCost, width_in: int, width_out: int) -> float:
        """The interpolated latency of ``layer`` with these widths."""
        grid_in, grid_out, seconds = self.table[layer.name]
        row = _interpolate(grid_in, seconds, width_in)
        return float(_interpolate(grid_out, row, width_out))

    def __call__(self, keep: torch.Tensor) -> float:
        """The predicted latency of the network keeping ``keep`` (bool per channel id)."""
        return self.scale * self._layers([list(layer.widths(keep)) for layer in self.costs.layers])
