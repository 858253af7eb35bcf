"""Registers every torchvision image-classification builder (``resnet18``, ``mobilenet_v2``, ``vit_b_16``,
...) under its torchvision name. Pretrained weights come from torchvision's weights API
(``weights='DEFAULT'``), which downloads them on first use."""
import functools

import torchvision

from ..registry import register_model

TORCHVISION_NAMES = tuple(torchvision.models.list_models(module=torchvision.models))


def _build(name, num_classes=1000):
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def _build_pretrained(name):
    return torchvision.models.get_model(name, weights="DEFAULT")


for _name in TORCHVISION_NAMES:
    register_model("imagenet", name=_name, build_pretrained=functools.partial(_build_pretrained, _name))(
        functools.partial(_build, _name))
