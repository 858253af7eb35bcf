"""Architectures for 224x224 RGB images with 1000 classes (the ``imagenet`` dataset): Distiller's own
(``alexnet_bn``, ``preact_resnet18/34/50/101/152``, ``mobilenet`` v1 with its width multipliers and
``mobilenet_v1_dropout``), Distiller's variants of torchvision's ResNets and of ``mobilenet_v2``,
``googlenet`` and ``inception_v3`` under torchvision's names, every other torchvision classification builder
by its torchvision name, and every torchvision builder as torchvision defines it as ``torchvision.<name>``.

Importing this package registers every builder in ``distiller.models.registry``.
"""
from .alexnet_bn import AlexNetBN, alexnet_bn
from .mobilenet import (MobileNet, MobileNetV1Dropout, mobilenet, mobilenet_025, mobilenet_050, mobilenet_075,
                        mobilenet_v1_dropout)
from .preresnet_imagenet import (PreactBasicBlock, PreactBottleneck, PreactResNet, preact_resnet18,
                                 preact_resnet34, preact_resnet50, preact_resnet101, preact_resnet152)
from .resnet import RESNET_NAMES, DistillerBasicBlock, DistillerBottleneck, distiller_resnet
from .resnet_earlyexit import ResNetEarlyExit, resnet50_earlyexit
from .torchvision_models import TORCHVISION_NAMES, TORCHVISION_PREFIX
from .torchvision_patched import GoogLeNet, Inception3, InvertedResidual, MobileNetV2

__all__ = ["AlexNetBN", "DistillerBasicBlock", "DistillerBottleneck", "GoogLeNet", "Inception3",
           "InvertedResidual", "MobileNet", "MobileNetV1Dropout", "MobileNetV2", "PreactBasicBlock",
           "PreactBottleneck", "PreactResNet", "RESNET_NAMES", "ResNetEarlyExit", "TORCHVISION_NAMES",
           "TORCHVISION_PREFIX",
           "alexnet_bn", "distiller_resnet", "mobilenet", "mobilenet_025", "mobilenet_050", "mobilenet_075",
           "mobilenet_v1_dropout", "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101",
           "preact_resnet152", "resnet50_earlyexit"]
