"""Tied (shared) weights under post-training quantization.

The range-linear wrappers replace a layer's weight by its integer codes in place. When two layers share one
weight tensor (e.g. a language model whose decoder reuses the embedding table: Press & Wolf, EACL 2017), the
second wrapper would quantize the first one's integers again, and a float layer sharing it would compute with
integers. Before wrapping, :func:`untie_shared_weights` gives every such layer a copy of its own.
"""
from __future__ import annotations

import logging
from collections.abc import Collection

from torch import nn

__all__ = ["untie_shared_weights"]

logger = logging.getLogger(__name__)


def untie_shared_weights(model: nn.Module, quantized: Collection[str]) -> list[tuple[str, str]]:
    """Gives each layer whose ``weight`` is shared with an earlier layer its own copy, when any of the layers
    sharing it is in ``quantized`` (the names of the layers whose weights are quantized in place).

    Returns:
        the (layer, layer it shared its weight with) pairs that were untied.
    """
    owners: dict[int, list[str]] = {}
    modules = dict(model.named_modules(remove_duplicate=False))
    for name, module in modules.items():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and name not in owners.get(id(weight), []):
            owners.setdefault(id(weight), []).append(name)
    untied = []
    for names in owners.values():
        if len(names) < 2 or not set(names) & set(quantized):
            continue
        for name in names[1:]:
            module = modules[name]
            module.weight = nn.Parameter(module.weight.detach().clone(), requires_grad=module.weight.requires_grad)
            untied.append((name, names[0]))
            logger.info("'%s' shares its weight with '%s' (tied weights): each gets its own copy, quantized "
                        "separately", name, names[0])
    return untied
