"""MobileNet v1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017): a 3x3/2 stem convolution and 13 depthwise-separable blocks (a 3x3 depthwise and a 1x1
pointwise convolution, each followed by BN and ReLU), global average pooling and a classifier.

Two layouts, both Distiller's:

* ``mobilenet`` (and the width multipliers ``mobilenet_075/_050/_025``): everything in ``model.N`` (the
  stem is ``model.0``, block i is ``model.i`` with layers ``model.i.0`` ... ``model.i.5``, ``model.14`` is a
  7x7 average pooling, so inputs are 224x224), classifier ``fc``. Channel counts are scaled by the width
  multiplier (alpha) and rounded down, with at least 8 channels.
* ``mobilenet_v1_dropout`` (the layout of the AMC experiments, He et al., "AMC: AutoML for Model Compression
  and Acceleration on Mobile Devices", ECCV 2018): stem ``conv1``, blocks ``features.0`` ...
  ``features.12``, global average pooling over any input size, then ``classifier`` = dropout(0.2) + linear.
"""
import math

import torch
import torch.nn as nn

from ...errors import ArgumentError
from ..layers import init_weights
from ..registry import register_model

BASE_CHANNELS = (32, 64, 128, 256, 512, 1024)
# (index into the channel table, stride) of the 13 depthwise-separable blocks: Table 1 of the paper
BLOCKS = ((1, 1), (2, 2), (2, 1), (3, 2), (3, 1), (4, 2), (4, 1), (4, 1), (4, 1), (4, 1), (4, 1), (5, 2), (5, 1))


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> list:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


def depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """A 3x3 depthwise convolution and a 1x1 pointwise convolution, each with BN and ReLU (six layers)."""
    return nn.Sequential(*conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels),
                         *conv_bn_relu(in_channels, out_channels, 1))


def make_blocks(channels: tuple) -> list:
    """The 13 depthwise-separable blocks for the channel table ``channels`` (six widths)."""
    blocks, in_channels = [], channels[0]
    for index, stride in BLOCKS:
        blocks.append(depthwise_separable(in_channels, channels[index], stride))
        in_channels = channels[index]
    return blocks


class MobileNet(nn.Module):
    """MobileNet v1 with width multiplier ``width_mult`` (the paper's alpha), in Distiller's ``model.N``
    layout."""

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, min_channels: int = 8) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ArgumentError(f"width_mult must be positive, got {width_mult}")
        channels = tuple(max(math.floor(n * width_mult), min_channels) for n in BASE_CHANNELS)
        self.model = nn.Sequential(nn.Sequential(*conv_bn_relu(3, channels[0], 3, stride=2)),
                                   *make_blocks(channels), nn.AvgPool2d(7))
        self.fc = nn.Linear(channels[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.model(x), 1))


class MobileNetV1Dropout(nn.Module):
    """MobileNet v1 in the ``conv1``/``features``/``classifier`` layout, with dropout before the classifier."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*conv_bn_relu(3, BASE_CHANNELS[0], 3, stride=2))
        self.features = nn.Sequential(*make_blocks(BASE_CHANNELS))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(BASE_CHANNELS[-1], num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.conv1(x))
        return self.classifier(x.mean((2, 3)))


@register_model("imagenet")
def mobilenet(num_classes: int = 1000) -> MobileNet:
    return MobileNet(1.0, num_classes)


@register_model("imagenet")
def mobilenet_075(num_classes: int = 1000) -> MobileNet:
    return MobileNet(0.75, num_classes)


@register_model("imagenet")
def mobilenet_050(num_classes: int = 1000) -> MobileNet:
    return MobileNet(0.5, num_classes)


@register_model("imagenet")
def mobilenet_025(num_classes: int = 1000) -> MobileNet:
    return MobileNet(0.25, num_classes)


@register_model("imagenet")
def mobilenet_v1_dropout(num_classes: int = 1000) -> MobileNetV1Dropout:
    return MobileNetV1Dropout(num_classes)
