"""Replacing chosen ``nn.Linear`` layers of a model by their truncated-SVD factorisation (:class:`LowRankLinear`)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional

from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from ..errors import ArgumentError, UnmatchedNameError
from ..model_tools import model_setattr
from .low_rank_linear import LowRankLinear
from .svd import rank_for_energy

__all__ = ["low_rank_decompose"]

logger = logging.getLogger(__name__)


def _linear_layer(model: nn.Module, name: str) -> nn.Linear:
    modules = dict(model.named_modules())
    if name not in modules:
        raise UnmatchedNameError(name, [n for n, m in modules.items() if isinstance(m, nn.Linear)], kind="Linear layer")
    module = modules[name]
    if not isinstance(module, nn.Linear):
        raise ArgumentError(f"'{name}' is a {type(module).__name__}, not an nn.Linear: only Linear layers can be "
                            "decomposed; leave it out of the layer list", argument="layer_names")
    if isinstance(module, NonDynamicallyQuantizableLinear):
        raise ArgumentError(f"'{name}' is the output projection of a MultiheadAttention, which reads its weight "
                            "directly: it cannot be replaced; leave it out of the layer list", argument="layer_names")
    return module


def _rank_of(name: str, layer: nn.Linear, rank: Optional[int], energy: Optional[float]) -> int:
    limit = min(layer.in_features, layer.out_features)
    if energy is not None:
        chosen = rank_for_energy(layer.weight, energy)
        if chosen >= limit:
            raise ArgumentError(f"energy {energy} keeps all {limit} singular values of '{name}' "
                                f"({layer.out_features}x{layer.in_features}): nothing to remove; lower the energy "
                                f"or leave '{name}' out", argument="energy")
        return chosen
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank < limit:
        raise ArgumentError(f"rank {rank!r} does not reduce '{name}' ({layer.out_features}x{layer.in_features}): "
                            f"give an integer from 1 to {limit - 1}", argument="rank")
    return rank


def low_rank_decompose(model: nn.Module, layer_names: Sequence[str], rank: Optional[int] = None,
                       energy: Optional[float] = None) -> dict[str, int]:
    """Replaces each named ``nn.Linear`` of ``model``, in place, by a :class:`LowRankLinear` of its truncated SVD.

    Give either a fixed ``rank`` for every layer or an ``energy`` fraction: each layer then keeps the fewest
    singular values whose squares sum to at least that fraction of the total (Xue et al., 2013). Every name is
    checked before any layer is replaced. A rank keeps fewer weights than the dense layer only below
    ``in * out / (in + out)``; a larger one is applied, with a warning.

    Args:
        model: the model to change in place.
        layer_names: module names as in ``model.named_modules()``, e.g. ``['fc1', 'classifier.0']``.
        rank: the rank of every replacement, ``1 <= rank < min(in_features, out_features)``.
        energy: the fraction of squared singular values to keep, in ``(0, 1]``.

    Returns:
        the rank chosen for each layer, by name.

    Raises:
        ArgumentError: neither or both of ``rank`` and ``energy``, no layer names, a rank that does not reduce a
            layer, an energy outside ``(0, 1]`` or one that keeps every singular value of a layer, a named module
            that is not a replaceable ``nn.Linear``.
        UnmatchedNameError: a name that is no module of the model.

    Example:
        >>> model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
        >>> low_rank_decompose(model, ['0'], rank=8)
        {'0': 8}
        >>> type(model[0]).__name__
        'LowRankLinear'
    """
    if (rank is None) == (energy is None):
        raise ArgumentError("give exactly one of rank and energy", argument="rank")
    if isinstance(layer_names, str) or not layer_names:
        raise ArgumentError(f"layer_names must be a non-empty list of Linear layer names; got {layer_names!r}",
                            argument="layer_names")
    layers = {name: _linear_layer(model, name) for name in layer_names}
    ranks = {name: _rank_of(name, layer, rank, energy) for name, layer in layers.items()}
    for name, layer in layers.items():
        dense, factored = layer.in_features * layer.out_features, ranks[name] * (layer.in_features + layer.out_features)
        if factored >= dense:
            logger.warning("rank %d of '%s' keeps %d weights, the dense layer has %d", ranks[name], name, factored,
                           dense)
        model_setattr(model, name, LowRankLinear.from_linear(layer, ranks[name]))
    return ranks
