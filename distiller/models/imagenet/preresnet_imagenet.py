"""Pre-activation ResNets for ImageNet (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

The stem (7x7/2 convolution, BN, ReLU, 3x3/2 max-pool) and the four stages of 64-512 channels follow the
original ResNet; the blocks apply BN-ReLU before each convolution, and a final BN-ReLU precedes the 7x7
average pooling (so inputs are 224x224). Shortcuts that change shape are 1x1 convolutions on the
pre-activated input. The very first block does not pre-activate: the stem already ends with BN-ReLU.

Module and parameter names are Distiller's (``pre_bn``/``pre_relu``, ``bn1_2``/``relu1_2`` between conv1
and conv2, ``bn2_3``/``relu2_3`` between conv2 and conv3, ``downsample.0``); the residual sum is the
``EltwiseAdd`` module ``residual_eltwiseadd`` so that quantizers see it.
"""
import abc
from typing import Optional

import torch
import torch.nn as nn

from ...modules import EltwiseAdd
from ..layers import conv1x1, conv3x3, init_weights
from ..registry import register_model

STAGE_WIDTHS = (64, 128, 256, 512)


class PreactBlock(nn.Module, abc.ABC):
    """What both block types share: the optional pre-activation, the shortcut and the residual sum."""
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, preactivate: bool) -> None:
        super().__init__()
        self.preactivate = preactivate
        if preactivate:
            self.pre_bn = nn.BatchNorm2d(in_channels)
            self.pre_relu = nn.ReLU()

    def add_shortcut(self, in_channels: int, out_channels: int, stride: int) -> None:
        """Registers ``downsample`` (after the block's layers, as in Distiller) and the residual sum."""
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride))
        self.residual_eltwiseadd = EltwiseAdd()

    @abc.abstractmethod
    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        """The block's layers on the pre-activated input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x)) if self.preactivate else x
        identity = x if self.downsample is None else self.downsample(preact)
        return self.residual_eltwiseadd(self.residual(preact), identity)


class PreactBasicBlock(PreactBlock):
    """Two pre-activated 3x3 convolutions (ResNet-18/34)."""
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, preactivate: bool = True) -> None:
        super().__init__(in_channels, channels, stride, preactivate)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1_2 = nn.BatchNorm2d(channels)
        self.relu1_2 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.add_shortcut(in_channels, channels * self.expansion, stride)

    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu1_2(self.bn1_2(self.conv1(preact))))


class PreactBottleneck(PreactBlock):
    """Pre-activated 1x1 - 3x3 - 1x1 convolutions with a 4x wider output (ResNet-50/101/152)."""
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, preactivate: bool = True) -> None:
        super().__init__(in_channels, channels, stride, preactivate)
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1_2 = nn.BatchNorm2d(channels)
        self.relu1_2 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2_3 = nn.BatchNorm2d(channels)
        self.relu2_3 = nn.ReLU()
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.add_shortcut(in_channels, channels * self.expansion, stride)

    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.relu1_2(self.bn1_2(self.conv1(preact)))
        out = self.relu2_3(self.bn2_3(self.conv2(out)))
        return self.conv3(out)


class PreactResNet(nn.Module):
    """A pre-activation ResNet with ``blocks[i]`` blocks of type ``block`` in stage ``i``."""

    def __init__(self, block: type[PreactBlock], blocks: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels, stages = 64, []
        for index, (channels, count) in enumerate(zip(STAGE_WIDTHS, blocks)):
            stage = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                stage.append(block(in_channels, channels, stride, preactivate=index > 0 or position > 0))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.final_relu = nn.ReLU()
        self.avgpool = nn.AvgPool2d(7)
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.final_relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("imagenet")
def preact_resnet18(num_classes: int = 1000) -> PreactResNet:
    return PreactResNet(PreactBasicBlock, (2, 2, 2, 2), num_classes)


@register_model("imagenet")
def preact_resnet34(num_classes: int = 1000) -> PreactResNet:
    return PreactResNet(PreactBasicBlock, (3, 4, 6, 3), num_classes)


@register_model("imagenet")
def preact_resnet50(num_classes: int = 1000) -> PreactResNet:
    return PreactResNet(PreactBottleneck, (3, 4, 6, 3), num_classes)


@register_model("imagenet")
def preact_resnet101(num_classes: int = 1000) -> PreactResNet:
    return PreactResNet(PreactBottleneck, (3, 4, 23, 3), num_classes)


@register_model("imagenet")
def preact_resnet152(num_classes: int = 1000) -> PreactResNet:
    return PreactResNet(PreactBottleneck, (3, 8, 36, 3), num_classes)
