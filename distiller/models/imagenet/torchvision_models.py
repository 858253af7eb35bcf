"""Registers every torchvision image-classification builder (``resnet18``, ``mobilenet_v2``, ``vit_b_16``,
...) under its torchvision name. Pretrained weights come from torchvision's weights API
(``weights='DEFAULT'``), which downloads them on first use.

Every model returns plain logits: GoogLeNet and Inception-v3 are built without their auxiliary classifiers
(torchvision would otherwise return a tuple in training mode, which no classification loop expects)."""
import functools

import torchvision

from ..registry import register_model

TORCHVISION_NAMES = tuple(torchvision.models.list_models(module=torchvision.models))


#: builder keyword arguments that make a model return plain logits
_LOGITS_ONLY = {"googlenet": {"aux_logits": False, "init_weights": True}, "inception_v3": {"aux_logits": False, "init_weights": True}}


def _build(name, num_classes=1000):
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **_LOGITS_ONLY.get(name, {}))


def _build_pretrained(name):
    kwargs = {k: v for k, v in _LOGITS_ONLY.get(name, {}).items() if k == "aux_logits"}
    return torchvision.models.get_model(name, weights="DEFAULT", **kwargs)


for _name in TORCHVISION_NAMES:
    register_model("imagenet", name=_name, build_pretrained=functools.partial(_build_pretrained, _name))(
        functools.partial(_build, _name))
