"""Pre-activation ResNets for CIFAR-10 (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

Each block applies batch-norm and ReLU *before* its convolutions, leaving the shortcut path a pure identity.
Where a block changes shape, ``preact_resnet*_cifar`` use Distiller's parameter-free shortcut (2x2 average
pooling and zero channel padding, option A of He et al. 2016); the ``*_conv_ds`` variants use a 1x1
convolution on the pre-activated input instead.

Module and parameter names are Distiller's (``layer1.0.pre_bn``, ``pre_relu``, ``conv1``, ``bn``, ``relu``,
``conv2``, ``downsample``); the residual sum is the ``EltwiseAdd`` module ``residual_eltwiseadd`` so that
quantizers see it. Like Distiller's, these networks take 32x32 inputs only.
"""
import functools
from typing import Optional

import torch
import torch.nn as nn

from ...modules import EltwiseAdd
from ..layers import conv1x1, conv3x3, init_weights, zero_pad_shortcut
from ..registry import register_model
from .resnet_cifar import STAGE_WIDTHS, make_stages, maybe_apply


class PreactBasicBlock(nn.Module):
    """``x + conv2(relu(bn(conv1(pre_relu(pre_bn(x))))))``."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, conv_downsample: bool = False) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(in_channels)
        self.pre_relu = nn.ReLU()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.conv_downsample = conv_downsample
        self.downsample: Optional[nn.Module]
        if stride == 1 and in_channels == channels:
            self.downsample = None
        elif conv_downsample:
            self.downsample = conv1x1(in_channels, channels, stride)
        else:
            self.downsample = zero_pad_shortcut(in_channels, channels, stride)
        self.residual_eltwiseadd = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x))
        identity = maybe_apply(self.downsample, preact if self.conv_downsample else x)
        out = self.conv2(self.relu(self.bn(self.conv1(preact))))
        return self.residual_eltwiseadd(out, identity)


class PreactResNetCifar(nn.Module):
    """A pre-activation CIFAR ResNet of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, conv_downsample: bool = False) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        block = functools.partial(PreactBasicBlock, conv_downsample=conv_downsample)
        self.layer1, self.layer2, self.layer3 = make_stages(block, blocks_per_stage)
        self.final_bn = nn.BatchNorm2d(STAGE_WIDTHS[-1])
        self.final_relu = nn.ReLU()
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.final_relu(self.final_bn(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("cifar10")
def preact_resnet20_cifar(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(3, num_classes)


@register_model("cifar10")
def preact_resnet32_cifar(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(5, num_classes)


@register_model("cifar10")
def preact_resnet44_cifar(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(7, num_classes)


@register_model("cifar10")
def preact_resnet56_cifar(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(9, num_classes)


@register_model("cifar10")
def preact_resnet110_cifar(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(18, num_classes)


@register_model("cifar10")
def preact_resnet20_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(3, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet32_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(5, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet44_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(7, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet56_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(9, num_classes, conv_downsample=True)


@register_model("cifar10")
def preact_resnet110_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    return PreactResNetCifar(18, num_classes, conv_downsample=True)
