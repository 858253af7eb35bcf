"""Architectures for 224x224 RGB images with 1000 classes (the ``imagenet`` dataset): Distiller's own
(``alexnet_bn``, ``preact_resnet18/34/50/101/152``, ``mobilenet`` v1 and its width multipliers) and every
torchvision classification builder by its torchvision name.

Importing this package registers every builder in ``distiller.models.registry``.
"""
from .alexnet_bn import AlexNetBN, alexnet_bn
from .mobilenet import MobileNet, mobilenet, mobilenet_025, mobilenet_050, mobilenet_075
from .preresnet_imagenet import (PreactBottleneck, PreactResNet, preact_resnet18, preact_resnet34,
                                 preact_resnet50, preact_resnet101, preact_resnet152)
from .torchvision_models import TORCHVISION_NAMES

__all__ = ["AlexNetBN", "MobileNet", "PreactBottleneck", "PreactResNet", "TORCHVISION_NAMES", "alexnet_bn",
           "mobilenet", "mobilenet_025", "mobilenet_050", "mobilenet_075", "preact_resnet18",
           "preact_resnet34", "preact_resnet50", "preact_resnet101", "preact_resnet152"]
