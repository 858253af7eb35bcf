"""Compute summaries: per-layer feature-map shapes, weight volumes and MACs, measured with forward hooks.

MACs are dense-equivalent (zero weights still count) and per sample; only convolutions and fully
connected layers are counted, as in Distiller's ``--summary=compute``. Quantized layers count as the layer
they wrap (see :func:`distiller.graph.cost.counted_layer`), so a quantized model has its float MACs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Optional, Union, cast

import pandas as pd
import torch
from torch import nn

from ..graph.capture import as_input_tuple, eval_mode
from ..graph.cost import COUNTED_LAYERS, counted_layer, module_macs
from ..utils import model_device, model_is_parallel

__all__ = ["model_performance_summary", "model_macs", "model_params", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ["Name", "Type", "Attrs", "IFM", "IFM volume", "OFM", "OFM volume", "Weights volume", "MACs"]


def _attrs(module: nn.Module) -> str:
    if not isinstance(module, nn.modules.conv._ConvNd):
        return ""
    kernel = "x".join(str(k) for k in module.kernel_size)
    stride = "x".join(str(s) for s in module.stride)
    return f"k={kernel}, s={stride}, g={module.groups}"


def _first_tensor(values: Iterable[Any]) -> Optional[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
    return None


def model_performance_summary(model: nn.Module, dummy_input: Union[torch.Tensor, Sequence[Any]],
                              batch_size: int = 1) -> pd.DataFrame:
    """Runs ``model`` once on ``dummy_input`` and tabulates its convolution and fully connected layers.

    Args:
        model: an ``nn.Module`` (DataParallel wrappers are looked through). It is run in eval mode without
            autograd; its train/eval flags are restored afterwards.
        dummy_input: a tensor or a tuple of positional inputs (moved to the model's device).
        batch_size: kept for Distiller compatibility; feature-map volumes and MACs are per sample.
    Returns:
        pandas.DataFrame with one row per layer call and the columns :data:`SUMMARY_COLUMNS`: ``IFM``/``OFM``
        are shapes (batch first), volumes and ``MACs`` are per sample. A quantized layer's row has the
        wrapper's name and type and the wrapped layer's attributes, weights and MACs.

    Example:
        >>> df = model_performance_summary(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
        >>> int(df['MACs'].sum())
        1814073344
    """
    del batch_size  # volumes are per sample whatever the input's batch
    model = cast(nn.Module, model.module) if model_is_parallel(model) else model
    names = {module: name for name, module in model.named_modules()}
    rows: list[list[Any]] = []
    handles = []

    def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        ifm, ofm = _first_tensor(inputs), output if isinstance(output, torch.Tensor) else _first_tensor(output)
        layer = counted_layer(module)
        if ifm is None or ofm is None or not isinstance(layer, COUNTED_LAYERS):
            return
        rows.append([names[module], type(module).__name__, _attrs(layer), tuple(ifm.shape),
                     math.prod(ifm.shape[1:]), tuple(ofm.shape), math.prod(ofm.shape[1:]),
                     layer.weight.numel(), module_macs(layer, tuple(ifm.shape), tuple(ofm.shape))])

    for module in names:
        if counted_layer(module) is not None:
            handles.append(module.register_forward_hook(record))
    try:
        with eval_mode(model), torch.no_grad():
            model(*as_input_tuple(dummy_input, model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def model_macs(model: nn.Module, dummy_input: Union[torch.Tensor, Sequence[Any]]) -> int:
    """Total dense MACs per sample of ``model`` on ``dummy_input`` (convolutions and linear layers)."""
    return int(model_performance_summary(model, dummy_input)["MACs"].sum())


def model_params(model: nn.Module) -> int:
    """Number of parameter elements of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())
