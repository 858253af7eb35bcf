"""The "plain" 20-layer baseline of He et al. 2016 ("Deep Residual Learning for Image Recognition", section
4.2): ``resnet20_cifar`` without its shortcuts, used to show what the residual connections contribute.
``plain20_cifar_nobn`` also drops batch normalisation (its convolutions get biases instead).

Module and parameter names follow ``resnet20_cifar`` (``layer1.0.conv1.weight``, ...), so schedules written
for one apply to the other.
"""
import functools

import torch.nn as nn

from ..registry import register_model
from .resnet_cifar import ResNetCifar, conv3x3_maybe_bn


class PlainBlock(nn.Module):
    """Two conv-BN-ReLU layers with no shortcut."""

    def __init__(self, in_channels, channels, stride=1, batch_norm=True):
        super().__init__()
        self.conv1, self.bn1 = conv3x3_maybe_bn(in_channels, channels, stride, batch_norm)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = conv3x3_maybe_bn(channels, channels, 1, batch_norm)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(x)))


class PlainCifar(ResNetCifar):
    """A plain (shortcut-free) network of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage, num_classes=10, batch_norm=True):
        super().__init__(blocks_per_stage, num_classes, block=functools.partial(PlainBlock, batch_norm=batch_norm),
                         batch_norm=batch_norm)


@register_model("cifar10")
def plain20_cifar(num_classes=10):
    return PlainCifar(3, num_classes)


@register_model("cifar10")
def plain20_cifar_nobn(num_classes=10):
    return PlainCifar(3, num_classes, batch_norm=False)
