"""ResNets for CIFAR-10 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

A network of depth 6n+2 has a 3x3 stem convolution with 16 filters, three stages of n basic blocks with 16,
32 and 64 filters (the first block of stages 2 and 3 halves the feature map), global average pooling and a
linear classifier. A block that changes shape has a 1x1 convolution + batch-norm shortcut (option B).
"""
import torch
import torch.nn as nn

from ..layers import conv3x3, init_weights, projection_shortcut
from ..registry import register_model

STAGE_WIDTHS = (16, 32, 64)


def conv3x3_maybe_bn(in_channels, out_channels, stride, batch_norm):
    """A 3x3 convolution (with a bias when there is no batch-norm) and its batch-norm (or an identity)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm)
    return conv, nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut around them: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.downsample = projection_shortcut(in_channels, channels, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


def make_stages(block, blocks_per_stage, in_channels=STAGE_WIDTHS[0]):
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
    """A CIFAR network of depth ``6 * blocks_per_stage + 2`` built from ``block`` (residual by default).

    Args:
        blocks_per_stage: n in the depth 6n+2.
        num_classes: classifier outputs.
        block: ``block(in_channels, channels, stride)`` builds one block of a stage.
        batch_norm: False replaces the stem's batch-norm with an identity and gives its convolution a bias.
    """

    def __init__(self, blocks_per_stage, num_classes=10, block=None, batch_norm=True):
        super().__init__()
        self.conv1, self.bn1 = conv3x3_maybe_bn(3, STAGE_WIDTHS[0], 1, batch_norm)
        self.relu = nn.ReLU()
        self.layer1, self.layer2, self.layer3 = make_stages(block or BasicBlock, blocks_per_stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("cifar10")
def resnet20_cifar(num_classes=10):
    return ResNetCifar(3, num_classes)


@register_model("cifar10")
def resnet32_cifar(num_classes=10):
    return ResNetCifar(5, num_classes)


@register_model("cifar10")
def resnet44_cifar(num_classes=10):
    return ResNetCifar(7, num_classes)


@register_model("cifar10")
def resnet56_cifar(num_classes=10):
    return ResNetCifar(9, num_classes)


@register_model("cifar10")
def resnet110_cifar(num_classes=10):
    return ResNetCifar(18, num_classes)


@register_model("cifar10")
def resnet1202_cifar(num_classes=10):
    return ResNetCifar(200, num_classes)
