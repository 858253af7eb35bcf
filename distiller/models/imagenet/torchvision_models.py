"""Registers torchvision's image-classification builders.

Every torchvision model is available as ``torchvision.<name>`` (e.g. ``torchvision.resnet18``), exactly as
torchvision builds it. The bare name (``resnet18``, ``vit_b_16``, ...) gives the same model, except where
Distiller defined its own variant under torchvision's name: the ResNets of :mod:`.resnet` and the patched
``mobilenet_v2``, ``googlenet`` and ``inception_v3`` of :mod:`.torchvision_patched` (same parameters, modules
that quantizers can see). Pretrained weights come from torchvision's weights API, downloaded on first use.

``torchvision.googlenet`` and ``torchvision.inception_v3`` are built without their auxiliary classifiers, so
every model returns plain logits (torchvision would otherwise return a tuple in training mode).
"""
import functools

import torch.nn as nn
import torchvision

from ..registry import ModelBuilder, register_model
from .resnet import RESNET_NAMES, resnet_builders
from .torchvision_patched import PATCHED, patched_builders

TORCHVISION_NAMES = tuple(torchvision.models.list_models(module=torchvision.models))
TORCHVISION_PREFIX = "torchvision."

#: builder keyword arguments that make a model return plain logits
_LOGITS_ONLY = {"googlenet": {"aux_logits": False, "init_weights": True},
                "inception_v3": {"aux_logits": False, "init_weights": True}}


def _build(name: str, num_classes: int = 1000) -> nn.Module:
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **_LOGITS_ONLY.get(name, {}))


def _build_pretrained(name: str) -> nn.Module:
    kwargs = {k: v for k, v in _LOGITS_ONLY.get(name, {}).items() if k == "aux_logits"}
    return torchvision.models.get_model(name, weights="DEFAULT", **kwargs)


def _register_all() -> None:
    for name in TORCHVISION_NAMES:
        build: ModelBuilder = functools.partial(_build, name)
        build_pretrained: ModelBuilder = functools.partial(_build_pretrained, name)
        register_model("imagenet", name=TORCHVISION_PREFIX + name, build_pretrained=build_pretrained)(build)
        if name in RESNET_NAMES:
            build, build_pretrained = resnet_builders(name)
        elif name in PATCHED:
            build, build_pretrained = patched_builders(name)
        register_model("imagenet", name=name, build_pretrained=build_pretrained)(build)


_register_all()
