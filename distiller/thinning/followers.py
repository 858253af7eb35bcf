"""Tensors that follow a thinned tensor: a quantized layer's float copy and quantization parameters.

When thinning slices a layer's tensor (``weight``, ``bias``), these are sliced with it:

* its full-precision copy ``float_<name>`` (the Parameter that quantization-aware training trains, or the
  float weights a post-training wrapper saved), the same way;
* its quantization parameters: ``<name>_scale`` / ``<name>_zero_point`` on the layer (quantization-aware
  training) and, for the weight, the :attr:`~distiller.graph.WrapperRule.weight_rows` of the wrappers holding
  the layer (a post-training wrapper's ``w_scale`` / ``w_zero_point``). Per row of the tensor's first
  dimension (per-channel quantization) they keep the rows the tensor keeps; per tensor they stay.

So the kept channels are computed as before. Post-training wrappers keep their integer weights and scales, so
their outputs do not change. Quantization-aware training recomputes each weight range (per tensor, or per row)
from the float copy at every forward pass: removing zero filters never changes it (a range always contains 0),
but removing the input columns that read them, or non-zero weights (``contract_model``, ``prune_and_thin``),
narrows the ranges that those weights bounded. The kept weights are then quantized on a finer grid (each moves by
less than one former quantization step); thinning logs it (``note_ranges``). Pruning with ``group_dependency:
Graph`` zeroes the reading columns with the filters, so thinning its channels changes no range.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Callable, Optional

import torch
from torch import nn

from ..graph import WrapperRule, select
from ..masking import FP_BKP_PREFIX

msglogger = logging.getLogger(__name__)

__all__ = ["QUANT_PARAM_SUFFIXES", "kept_rows", "following_edits"]

Slicer = Callable[[torch.Tensor], torch.Tensor]

#: Suffixes of the quantization parameters that quantization-aware training keeps on a layer for its tensor
#: ``<name>`` (``weight_scale``, ``weight_zero_point``).
QUANT_PARAM_SUFFIXES = ("_scale", "_zero_point")


def kept_rows(tensor: torch.Tensor, slicer: Slicer) -> Optional[torch.Tensor]:
    """The positions along the first dimension of ``tensor`` that ``slicer`` keeps (it is applied to the row
    indices), or None when it keeps every row."""
    rows = torch.arange(tensor.shape[0], device=tensor.device)
    rows = rows.reshape((-1,) + (1,) * (tensor.dim() - 1)).expand(tensor.shape)
    kept = slicer(rows)
    if kept.shape[0] == tensor.shape[0]:
        return None
    return kept.reshape(kept.shape[0], -1)[:, 0]


def _has_tensor(module: nn.Module, name: str) -> bool:
    return module._parameters.get(name) is not None or module._buffers.get(name) is not None


def _ranges(tensor: torch.Tensor, per_row: bool) -> torch.Tensor:
    """``[2, rows]`` (or ``[2, 1]``): the quantization range of each row (or of the tensor), 0 included."""
    flat = tensor.detach().reshape(tensor.shape[0] if per_row else 1, -1)
    return torch.stack([flat.amin(dim=1).clamp(max=0), flat.amax(dim=1).clamp(min=0)])


def _note_range_change(module_name: str, tensor_name: str, float_copy: torch.Tensor, slicer: Slicer,
                       rows: Optional[torch.Tensor], per_row: bool) -> None:
    """Logs when quantization-aware training will quantize the kept weights with other ranges."""
    before = _ranges(float_copy, per_row)
    if per_row and rows is not None:
        before = before[:, rows]
    changed = int((before != _ranges(slicer(float_copy.detach()), per_row)).any(dim=0).sum())
    if changed:
        what = f"{changed} of its per-channel quantization ranges" if per_row else "its per-tensor quantization range"
        msglogger.info("Thinning '%s.%s': the removed weights held an extreme of %s; quantization-aware training "
                       "requantizes the kept weights with the narrower range(s) from the next forward pass (values "
                       "move by less than one former quantization step)", module_name, tensor_name, what)


def following_edits(module_name: str, layer: nn.Module, wrappers: Sequence[tuple[nn.Module, WrapperRule]],
                    tensor_name: str, slicer: Slicer, note_ranges: bool = False) -> list[tuple[nn.Module, str, Slicer]]:
    """The edits that follow slicing ``layer``'s ``tensor_name`` with ``slicer`` (see the module docstring).

    Computed before the tensor changes.

    Args:
        module_name: the layer's name (for the log).
        layer: the layer whose tensor is sliced.
        wrappers: the wrappers holding it (``(wrapper, rule)``, see :func:`~distiller.graph.unwrap`).
        tensor_name: ``'weight'``, ``'bias'``, ...
        slicer: the tensor's slicing function.
        note_ranges: log when quantization-aware training will quantize the kept weights with narrower ranges.
    Returns:
        ``[(owner module, tensor attribute, slicing function)]``.
    """
    edits: list[tuple[nn.Module, str, Slicer]] = []
    copy_name = FP_BKP_PREFIX + tensor_name
    if _has_tensor(layer, copy_name):
        edits.append((layer, copy_name, slicer))
    tensor = getattr(layer, tensor_name)
    params = [(layer, tensor_name + suffix) for suffix in QUANT_PARAM_SUFFIXES
              if _has_tensor(layer, tensor_name + suffix)]
    if tensor_name == "weight":
        params += [(wrapper, attr) for wrapper, rule in wrappers for attr in rule.weight_rows]
    rows = kept_rows(tensor, slicer)
    per_row = [(owner, attr) for owner, attr in params if getattr(owner, attr).numel() == tensor.shape[0] > 1]
    if rows is not None:
        edits += [(owner, attr, select(0, rows)) for owner, attr in per_row]
    float_copy = layer._parameters.get(copy_name)
    if note_ranges and params and float_copy is not None:
        _note_range_change(module_name, tensor_name, float_copy, slicer, rows, bool(per_row))
    return edits
