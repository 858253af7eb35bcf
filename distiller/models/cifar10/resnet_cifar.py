"""ResNets for CIFAR-10 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

A network of depth 6n+2 has a 3x3 stem convolution with 16 filters, three stages of n basic blocks with 16,
32 and 64 filters (the first block of stages 2 and 3 halves the feature map), 8x8 average pooling and a
linear classifier. A block that changes shape has a 1x1 convolution + batch-norm shortcut (option B).

Module and parameter names are Distiller's (``layer1.0.conv1``, ``layer1.0.relu2``, the residual sum as the
``EltwiseAdd`` module ``layer1.0.residual_eltwiseadd``), so Distiller's schedules, quantizer overrides and
checkpoints apply unchanged. Like Distiller's, these networks take 32x32 inputs only.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from ...modules import EltwiseAdd
from ..layers import conv3x3, init_weights, projection_shortcut
from ..registry import register_model

STAGE_WIDTHS = (16, 32, 64)


def maybe_apply(module: Optional[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, or ``x`` when the layer is absent (e.g. batch-norm in a network built without it)."""
    return x if module is None else module(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_channels: input channels.
        channels: output channels of both convolutions.
        stride: stride of the first convolution (and of the shortcut).
        residual: False drops the shortcut and the sum (the "plain" baseline of He et al. 2016).
        batch_norm: False drops the batch-norm layers.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, residual: bool = True,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else None
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else None
        self.relu2 = nn.ReLU()
        self.residual = residual
        if residual:
            self.downsample = projection_shortcut(in_channels, channels, stride)
            self.residual_eltwiseadd = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(maybe_apply(self.bn1, self.conv1(x)))
        out = maybe_apply(self.bn2, self.conv2(out))
        if self.residual:
            out = self.residual_eltwiseadd(out, maybe_apply(self.downsample, x))
        return self.relu2(out)


def make_stages(block: Callable[[int, int, int], nn.Module], blocks_per_stage: int,
                in_channels: int = STAGE_WIDTHS[0]) -> list:
    """Returns the three stages (``nn.Sequential`` of ``block(in_channels, channels, stride)``) of a CIFAR
    ResNet; stages 2 and 3 start with a stride-2 block."""
    stages = []
    for index, channels in enumerate(STAGE_WIDTHS):
        blocks = []
        for position in range(blocks_per_stage):
            stride = 2 if index > 0 and position == 0 else 1
            blocks.append(block(in_channels, channels, stride))
            in_channels = channels
        stages.append(nn.Sequential(*blocks))
    return stages


class ResNetCifar(nn.Module):
    """A CIFAR network of depth ``6 * blocks_per_stage + 2`` built from ``BasicBlock``.

    Args:
        blocks_per_stage: n in the depth 6n+2.
        num_classes: classifier outputs.
        residual: False builds the shortcut-free "plain" network.
        batch_norm: False drops every batch-norm layer (stem included).
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, residual: bool = True,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0]) if batch_norm else None
        self.relu = nn.ReLU()

        def block(in_channels: int, channels: int, stride: int) -> BasicBlock:
            return BasicBlock(in_channels, channels, stride, residual=residual, batch_norm=batch_norm)
        self.layer1, self.layer2, self.layer3 = make_stages(block, blocks_per_stage)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(maybe_apply(self.bn1, self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("cifar10")
def resnet20_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(3, num_classes)


@register_model("cifar10")
def resnet32_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(5, num_classes)


@register_model("cifar10")
def resnet44_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(7, num_classes)


@register_model("cifar10")
def resnet56_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(9, num_classes)


@register_model("cifar10")
def resnet110_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(18, num_classes)


@register_model("cifar10")
def resnet1202_cifar(num_classes: int = 10) -> ResNetCifar:
    return ResNetCifar(200, num_classes)
