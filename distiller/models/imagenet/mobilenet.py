"""MobileNet v1 (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017): a 3x3 stem convolution and 13 depthwise-separable blocks (a 3x3 depthwise convolution
and a 1x1 pointwise convolution, each followed by BN and ReLU). The width multiplier (alpha) scales every
layer's channel count: ``mobilenet`` is alpha=1, ``mobilenet_075/_050/_025`` are 0.75, 0.5 and 0.25."""
import torch
import torch.nn as nn

from ..layers import init_weights
from ..registry import register_model

STEM_CHANNELS = 32
# (output channels, stride) of the depthwise-separable blocks, Table 1 of the paper
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def conv_bn_relu(in_channels, out_channels, kernel_size, stride, groups=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU())


class DepthwiseSeparableBlock(nn.Module):
    """A 3x3 depthwise convolution followed by a 1x1 pointwise convolution, each with BN and ReLU."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.depthwise = conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = conv_bn_relu(in_channels, out_channels, 1, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MobileNet(nn.Module):
    """MobileNet v1 with width multiplier ``width_mult`` (the paper's alpha)."""

    def __init__(self, width_mult=1.0, num_classes=1000):
        super().__init__()
        if not 0 < width_mult <= 1:
            raise ValueError(f"width_mult must be in (0, 1], got {width_mult}")
        channels = max(1, int(STEM_CHANNELS * width_mult))
        layers = [conv_bn_relu(3, channels, 3, 2)]
        for out_channels, stride in BLOCKS:
            out_channels = max(1, int(out_channels * width_mult))
            layers.append(DepthwiseSeparableBlock(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("imagenet")
def mobilenet(num_classes=1000):
    return MobileNet(1.0, num_classes)


@register_model("imagenet")
def mobilenet_075(num_classes=1000):
    return MobileNet(0.75, num_classes)


@register_model("imagenet")
def mobilenet_050(num_classes=1000):
    return MobileNet(0.5, num_classes)


@register_model("imagenet")
def mobilenet_025(num_classes=1000):
    return MobileNet(0.25, num_classes)
