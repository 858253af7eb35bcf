"""Model transforms under Distiller's module path: folding BatchNorm layers into the layers before them."""
from __future__ import annotations

import typing
from collections import OrderedDict
from typing import Any, Optional

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .graph.adjacency import AdjacentsEntry
from .graph.summary_graph import SummaryGraph
from .model_tools import model_setattr
from .quantization.bn_fold import _FOLDABLE, FoldableLayer, SimulatedFoldedBatchNorm, find_batchnorm_pairs
from .quantization.range_linear.ptq_graph import fold_batch_norm
from .utils import model_is_parallel

__all__ = ["fold_batch_norms", "batchnorms_after"]


def _pairs_from_adjacency(model: nn.Module, adjacency_map: OrderedDict[str, AdjacentsEntry]) -> list[tuple[str, str]]:
    """(layer, BatchNorm) names where the BN is the only consumer of a foldable layer and reads only from it."""
    modules = dict(model.named_modules())
    pairs = []
    for name, entry in adjacency_map.items():
        layer = modules.get(name)
        if layer is None or type(layer) not in _FOLDABLE or len(entry.successors) != 1:
            continue
        bn_name = entry.successors[0].name
        bn = modules.get(bn_name)
        bn_entry = adjacency_map.get(bn_name)
        if (type(bn) is _FOLDABLE[type(layer)] and bn.track_running_stats and bn_entry is not None
                and len(bn_entry.predecessors) == 1):
            pairs.append((name, bn_name))
    return pairs


def fold_batch_norms(model: nn.Module, dummy_input: Any = None,
                     adjacency_map: Optional[OrderedDict[str, AdjacentsEntry]] = None,
                     inference: bool = True) -> nn.Module:
    """Folds every BatchNorm that is the only consumer of a conv/linear layer into that layer, in place.

    ``W' = W * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps) + beta`` (Jacob et al.
    2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
    section 3.2). The BatchNorm is replaced by ``nn.Identity``.

    Args:
        model: the model (a DataParallel/DDP wrapper is looked through).
        dummy_input: an example input; the pairs are found on the graph of ``model`` run on it.
        adjacency_map: instead, a map from :meth:`SummaryGraph.adjacency_map` of this model. With neither, the
            pairs are found by tracing the model with ``torch.fx`` (no input needed).
        inference: fold with the running statistics for inference (the layer's weights change; the model
            computes what it computed in eval mode). False: replace the layer by a
            :class:`~distiller.quantization.SimulatedFoldedBatchNorm`, which keeps training the BatchNorm.
    Returns:
        ``model``.
    Raises:
        distiller.graph.GraphCaptureError: the model cannot be traced or does not run on ``dummy_input``.

    Example:
        >>> model.eval()
        >>> fold_batch_norms(model, dummy_input=torch.randn(1, 3, 32, 32))
    """
    inner = model.get_submodule("module") if model_is_parallel(model) else model
    if adjacency_map is None and dummy_input is not None:
        adjacency_map = SummaryGraph(inner, dummy_input).adjacency_map()
    pairs = find_batchnorm_pairs(inner) if adjacency_map is None else _pairs_from_adjacency(inner, adjacency_map)
    for layer_name, bn_name in pairs:
        # both found as a foldable layer and its BatchNorm
        layer = typing.cast(FoldableLayer, inner.get_submodule(layer_name))
        bn = typing.cast(_BatchNorm, inner.get_submodule(bn_name))
        if inference:
            fold_batch_norm(layer, bn)
        else:
            model_setattr(inner, layer_name, SimulatedFoldedBatchNorm(layer, bn).train(layer.training))
        model_setattr(inner, bn_name, nn.Identity())
    return model


def batchnorms_after(model: nn.Module) -> dict[str, _BatchNorm]:
    """``'<layer>.weight'`` -> the BatchNorm that alone reads that layer's output (the pairs BatchNorm
    folding would merge), for every such layer of ``model``.

    Raises:
        distiller.graph.capture.GraphCaptureError: the model cannot be traced by ``torch.fx``.
    """
    return {f"{layer}.weight": typing.cast(_BatchNorm, model.get_submodule(bn))
            for layer, bn in find_batchnorm_pairs(model)}
