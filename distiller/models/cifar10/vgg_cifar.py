"""VGG networks for CIFAR-10 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015): configurations A (VGG-11), B (13), D (16) and E (19) of 3x3 convolutions and five
2x2 max-pools, which reduce a 32x32 image to 1x1x512, followed by one linear classifier. The ``_bn``
variants add batch normalisation after every convolution (Ioffe & Szegedy 2015); as in Distiller, whose
layer names (``features.N``, ``classifier``) these models share, the convolutions keep their biases."""
from collections.abc import Sequence
from typing import Union

import torch
import torch.nn as nn

from ..layers import init_weights
from ..registry import register_model

POOL = "M"
CONFIGS = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
         512, 512, 512, 512, POOL),
}


def make_features(config: Sequence[Union[int, str]], batch_norm: bool) -> nn.Sequential:
    """The convolutional part of a VGG network as an ``nn.Sequential``."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in config:
        if isinstance(item, str):  # POOL
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU())
        in_channels = item
    return nn.Sequential(*layers)


class VGGCifar(nn.Module):
    """VGG-``depth`` for 32x32 images."""

    def __init__(self, depth: int, num_classes: int = 10, batch_norm: bool = False) -> None:
        super().__init__()
        self.features = make_features(CONFIGS[depth], batch_norm)
        self.classifier = nn.Linear(512, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("cifar10")
def vgg11_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(11, num_classes)


@register_model("cifar10")
def vgg13_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(13, num_classes)


@register_model("cifar10")
def vgg16_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(16, num_classes)


@register_model("cifar10")
def vgg19_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(19, num_classes)


@register_model("cifar10")
def vgg11_bn_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(11, num_classes, batch_norm=True)


@register_model("cifar10")
def vgg13_bn_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(13, num_classes, batch_norm=True)


@register_model("cifar10")
def vgg16_bn_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(16, num_classes, batch_norm=True)


@register_model("cifar10")
def vgg19_bn_cifar(num_classes: int = 10) -> VGGCifar:
    return VGGCifar(19, num_classes, batch_norm=True)
