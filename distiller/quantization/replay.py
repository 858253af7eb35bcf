"""Replays a quantizer recorded in ``CompressionScheduler.model_transforms`` on a freshly built model.

``QuantizationPolicy`` records ``{'kind': 'quantization', 'quantizer': quantizer.state_dict()}``;
``distiller.apputils.load_checkpoint`` calls :func:`replay_quantization` with that record before loading
the weights, so the quantized model (float copies, clip values, EMA statistics) receives them. A later
``prepare_model`` by an identically configured quantizer (the schedule re-applied on resume) adopts the
replayed model instead of quantizing it twice.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import nn

from ..registry import QUANTIZERS, register_model_transform
from ..utils import model_device
from .base import Quantizer, input_from_spec

__all__ = ["replay_quantization", "quantizer_from_state"]


def quantizer_from_state(model: nn.Module, state: Mapping[str, Any],
                         optimizer: Optional[torch.optim.Optimizer] = None) -> Quantizer:
    """Re-creates the quantizer described by ``Quantizer.state_dict()`` (not yet applied to ``model``).

    Raises:
        KeyError: the recorded class is not registered (import the module defining it first).
    """
    cls = QUANTIZERS.get(state["class"])
    kwargs = dict(state["args"])
    if "optimizer" in inspect.signature(cls).parameters:
        kwargs["optimizer"] = optimizer
    return cls(model, **kwargs)


@register_model_transform("quantization")
def replay_quantization(model: nn.Module, record: Mapping[str, Any],
                        optimizer: Optional[torch.optim.Optimizer] = None) -> Quantizer:
    """Prepares ``model`` in place with the quantizer in ``record['quantizer']``; returns the quantizer.

    Pass the optimizer that will load the checkpoint's optimizer state: methods adding learned
    parameters (PACT) put them in its parameter groups first, so the saved state fits.
    """
    state = record["quantizer"]
    quantizer = quantizer_from_state(model, state, optimizer)
    quantizer.prepare_model(input_from_spec(state.get("dummy_input"), model_device(model)))
    quantizer.quantize_params()
    return quantizer
