"""Pre-activation ResNets for CIFAR-10 (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

Each block applies batch-norm and ReLU *before* its convolutions, leaving the shortcut path a pure identity.
Where a block changes shape, ``preact_resnet*_cifar`` use the parameter-free shortcut (subsampling and zero
channel padding, option A of He et al. 2016); the ``*_conv_ds`` variants use a 1x1 convolution on the
pre-activated input instead.
"""
import functools

import torch
import torch.nn as nn

from ..layers import ZeroPadShortcut, conv1x1, conv3x3, init_weights
from ..registry import register_model
from .resnet_cifar import STAGE_WIDTHS, make_stages


class PreactBasicBlock(nn.Module):
    """``x + conv2(relu2(bn2(conv1(relu1(bn1(x))))))``."""

    def __init__(self, in_channels, channels, stride=1, conv_downsample=False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.conv_downsample = conv_downsample
        if stride == 1 and in_channels == channels:
            self.downsample = None
        elif conv_downsample:
            self.downsample = conv1x1(in_channels, channels, stride)
        else:
            self.downsample = ZeroPadShortcut(in_channels, channels, stride)

    def forward(self, x):
        preact = self.relu1(self.bn1(x))
        if self.downsample is None:
            identity = x
        elif self.conv_downsample:
            identity = self.downsample(preact)
        else:
            identity = self.downsample(x)
        out = self.conv1(preact)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + identity


class PreactResNetCifar(nn.Module):
    """A pre-activation CIFAR ResNet of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage, num_classes=10, conv_downsample=False):
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        block = functools.partial(PreactBasicBlock, conv_downsample=conv_downsample)
        self.layer1, self.layer2, self.layer3 = make_stages(block, blocks_per_stage)
        self.final_bn = nn.BatchNorm2d(STAGE_WIDTHS[-1])
        self.final_relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.final_relu(self.final_bn(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("cifar10")
def preact_resnet20_cifar(num_classes=10):
    return PreactResNetCifar(3, num_classes)


@register_model("cifar10")
def preact_resnet32_cifar(num_classes=10):
    return PreactResNetCifar(5, num_classes)


@register_model("cifar10")
def preact_resnet44_cifar(num_classes=10):
    return PreactResNetCifar(7, num_classes)


@register_model("cifar10")
def preact_resnet56_cifar(num_classes=10):
    return PreactResNetCifar(9, num_classes)


@register_model("cifar10")
def preact_resnet110_cifar(num_classes=10):
    return PreactResNetCifar(18, num_classes)


@register_model("cifar10")
def preact_resnet20_cifar_conv_ds(num_classes=10):
    return PreactResNetCifar(3, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet32_cifar_conv_ds(num_classes=10):
    return PreactResNetCifar(5, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet44_cifar_conv_ds(num_classes=10):
    return PreactResNetCifar(7, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet56_cifar_conv_ds(num_classes=10):
    return PreactResNetCifar(9, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet110_cifar_conv_ds(num_classes=10):
    return PreactResNetCifar(18, num_classes, conv_downsample=True)
