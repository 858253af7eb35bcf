"""Physical removal of attention heads and FFN neurons: smaller, faster transformer layers.

The removal slices the layers' ``nn.Linear`` projections with :func:`distiller.thinning.surgery.apply_edits`
(the surgery the channel thinning uses), so gradients, optimizer state and pruning masks shrink with them.
Removing head ``h`` drops its query, key and value rows of ``in_proj`` and its columns of ``out_proj``;
removing FFN neuron ``j`` drops row ``j`` of ``linear1`` and column ``j`` of ``linear2``.

Attention layers must be :class:`~distiller.transformers.DistillerMultiheadAttention`:
``nn.MultiheadAttention`` cannot have fewer heads than ``embed_dim / head_dim``
(:func:`~distiller.transformers.convert_attention` converts a model, with the same outputs).
Only Distiller's channel graph (:mod:`distiller.graph`) sees inside arbitrary models; it treats
``nn.TransformerEncoderLayer`` as opaque (torch.fx cannot trace its fast-path checks), hence this module.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Optional

import torch
from torch import nn

from ..errors import ArgumentError
from ..masking import MaskDict
from ..thinning.plan import ThinningError
from ..thinning.surgery import apply_edits
from .units import ATTENTION_HEADS, FFN_NEURONS, Units, find_modules

msglogger = logging.getLogger(__name__)

__all__ = ["remove_units", "prune_attention_heads", "prune_ffn_neurons", "thin_transformer"]


def _check_thinnable(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.MultiheadAttention):
        raise ThinningError(f"'{name}' is a torch.nn.MultiheadAttention, whose head count is fixed by its width: "
                            f"convert the model with distiller.transformers.convert_attention(model) before "
                            f"building the optimizer and the schedule, then prune and thin")


def remove_units(model: nn.Module, units: Units, removed: Mapping[str, Sequence[int]],
                 optimizer: Optional[torch.optim.Optimizer] = None,
                 zeros_mask_dict: Optional[MaskDict] = None) -> None:
    """Removes the listed units (layer name -> unit indices) of ``model`` in place.

    Args:
        model: the model.
        units: :data:`~distiller.transformers.units.ATTENTION_HEADS` or ``FFN_NEURONS``.
        removed: layer name -> indices of the units to remove (layers with an empty list are left alone).
        optimizer: optional; its per-parameter state is sliced too.
        zeros_mask_dict: optional pruning masks (parameter name -> masker), sliced too.
    Raises:
        UnmatchedNameError: a name that is no layer with such units.
        ArgumentError: an index out of range.
        ThinningError: removing every unit of a layer; an ``nn.MultiheadAttention`` layer (convert it first).
    """
    edits: dict[str, dict[str, list[int]]] = {}
    modules = dict(model.named_modules())
    for found, indices in removed.items():
        module = modules.get(found)
        if module is None or not units.handles(module):
            find_modules(model, units, [found], "remove_units")  # names the problem
            raise ArgumentError(f"'{found}' is a pattern: name each layer exactly")
        count = units.count(module)
        bad = sorted(i for i in indices if not 0 <= i < count)
        if bad:
            raise ArgumentError(f"'{found}' has {count} {units.what}; indices {bad} are out of range")
        keep = torch.ones(count, dtype=torch.bool)
        keep[list(indices)] = False
        if not keep.any():
            raise ThinningError(f"removing all {count} {units.what} of '{found}' would leave the layer without any")
        if keep.all():
            continue
        _check_thinnable(found, module)
        prefix = f"{found}." if found else ""
        edits.update({prefix + owner: kept for owner, kept in units.linear_edits(module, keep).items()})
    if edits:
        apply_edits(model, edits, optimizer, [zeros_mask_dict] if zeros_mask_dict is not None else [])
        for found, indices in removed.items():
            if indices:
                units.resized(modules[found])
    msglogger.debug("removed %s: %s", units.what, {name: list(indices) for name, indices in removed.items()})


def prune_attention_heads(model: nn.Module, heads: Mapping[str, Sequence[int]],
                          optimizer: Optional[torch.optim.Optimizer] = None,
                          zeros_mask_dict: Optional[MaskDict] = None) -> None:
    """Removes the listed heads: ``{'encoder.layers.0.self_attn': [0, 2]}`` (see :func:`remove_units`)."""
    remove_units(model, ATTENTION_HEADS, heads, optimizer, zeros_mask_dict)


def prune_ffn_neurons(model: nn.Module, neurons: Mapping[str, Sequence[int]],
                      optimizer: Optional[torch.optim.Optimizer] = None,
                      zeros_mask_dict: Optional[MaskDict] = None) -> None:
    """Removes the listed FFN neurons: ``{'encoder.layers.0': [3, 7]}`` (see :func:`remove_units`)."""
    remove_units(model, FFN_NEURONS, neurons, optimizer, zeros_mask_dict)


def thin_transformer(model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                     zeros_mask_dict: Optional[MaskDict] = None) -> dict[str, dict[str, list[int]]]:
    """Removes every attention head and FFN neuron whose output-side weights (``out_proj`` / ``linear2``
    columns) are all zero, e.g. after :class:`~distiller.transformers.AttentionHeadPruner_AGP` or
    :class:`~distiller.transformers.FFNNeuronPruner_AGP`: the thinned model computes what the masked one did.

    Returns:
        ``{'heads': {layer: removed indices}, 'neurons': {layer: removed indices}}`` (layers that lost units).
    Raises:
        ThinningError: a layer whose units are all zero; an ``nn.MultiheadAttention`` with zero heads.
    """
    report: dict[str, dict[str, list[int]]] = {}
    for key, units in (("heads", ATTENTION_HEADS), ("neurons", FFN_NEURONS)):
        zero = {name: units.zero_units(module).nonzero().flatten().tolist()
                for name, module in model.named_modules() if units.handles(module)}
        report[key] = {name: indices for name, indices in zero.items() if indices}
        remove_units(model, units, report[key], optimizer, zeros_mask_dict)
    msglogger.info("thinned: %s", {key: {n: len(i) for n, i in r.items()} for key, r in report.items()})
    return report
