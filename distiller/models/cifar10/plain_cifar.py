"""The "plain" 20-layer baseline of He et al. 2016 ("Deep Residual Learning for Image Recognition", section
4.2): ``resnet20_cifar`` without its shortcuts, used to show what the residual connections contribute.
``plain20_cifar_nobn`` also drops batch normalisation (its convolutions get biases instead).

Module and parameter names follow ``resnet20_cifar`` (``layer1.0.conv1.weight``, ...), so schedules written
for one apply to the other.
"""
import torch
import torch.nn as nn

from ..layers import init_weights
from ..registry import register_model
from .resnet_cifar import STAGE_WIDTHS, make_stages


def conv3x3_maybe_bn(in_channels, out_channels, stride, batch_norm):
    """A 3x3 convolution (with a bias when there is no batch-norm) and its batch-norm (or an identity)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm)
    return conv, nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()


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


class PlainCifar(nn.Module):
    """A plain (shortcut-free) network of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage, num_classes=10, batch_norm=True):
        super().__init__()
        self.conv1, self.bn1 = conv3x3_maybe_bn(3, STAGE_WIDTHS[0], 1, batch_norm)
        self.relu = nn.ReLU()
        self.layer1, self.layer2, self.layer3 = make_stages(
            lambda cin, cout, stride: PlainBlock(cin, cout, stride, batch_norm), blocks_per_stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("cifar10")
def plain20_cifar(num_classes=10):
    return PlainCifar(3, num_classes)


@register_model("cifar10")
def plain20_cifar_nobn(num_classes=10):
    return PlainCifar(3, num_classes, batch_norm=False)
