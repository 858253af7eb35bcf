"""Pre-activation ResNets for ImageNet (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

The stem (7x7/2 convolution, BN, ReLU, 3x3/2 max-pool) and the four stages of 64-512 channels follow the
original ResNet; the blocks apply BN-ReLU before each convolution, and a final BN-ReLU precedes the global
pooling. Shortcuts that change shape are 1x1 convolutions on the pre-activated input.
"""
import torch
import torch.nn as nn

from ..layers import conv1x1, conv3x3, init_weights
from ..registry import register_model

STAGE_WIDTHS = (64, 128, 256, 512)


class PreactBasicBlock(nn.Module):
    """Two pre-activated 3x3 convolutions (ResNet-18/34)."""
    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.downsample = shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x):
        preact = self.relu1(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + identity


class PreactBottleneck(nn.Module):
    """Pre-activated 1x1 - 3x3 - 1x1 convolutions with a 4x wider output (ResNet-50/101/152)."""
    expansion = 4

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv1x1(in_channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn3 = nn.BatchNorm2d(channels)
        self.relu3 = nn.ReLU()
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.downsample = shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x):
        preact = self.relu1(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return out + identity


def shortcut(in_channels, out_channels, stride):
    """A 1x1 projection when the block changes shape, else None (identity)."""
    return None if stride == 1 and in_channels == out_channels else conv1x1(in_channels, out_channels, stride)


class PreactResNet(nn.Module):
    """A pre-activation ResNet with ``blocks[i]`` blocks of type ``block`` in stage ``i``."""

    def __init__(self, block, blocks, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels, stages = 64, []
        for index, (channels, count) in enumerate(zip(STAGE_WIDTHS, blocks)):
            stage = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                stage.append(block(in_channels, channels, stride))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.final_relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.final_relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("imagenet")
def preact_resnet18(num_classes=1000):
    return PreactResNet(PreactBasicBlock, (2, 2, 2, 2), num_classes)


@register_model("imagenet")
def preact_resnet34(num_classes=1000):
    return PreactResNet(PreactBasicBlock, (3, 4, 6, 3), num_classes)


@register_model("imagenet")
def preact_resnet50(num_classes=1000):
    return PreactResNet(PreactBottleneck, (3, 4, 6, 3), num_classes)


@register_model("imagenet")
def preact_resnet101(num_classes=1000):
    return PreactResNet(PreactBottleneck, (3, 4, 23, 3), num_classes)


@register_model("imagenet")
def preact_resnet152(num_classes=1000):
    return PreactResNet(PreactBottleneck, (3, 8, 36, 3), num_classes)
