"""ImageNet ResNet-50 with two early exits (Distiller's ``resnet50_earlyexit``), in the layout of
:mod:`distiller.models.imagenet.resnet` (torchvision's parameter names; one ReLU module per use).

Exits read the outputs of the first and second stages (``layer1.2.relu3``: 256 channels at 1/4 of the
input resolution; ``layer2.3.relu3``: 512 channels at 1/8), squeeze them with a 1x1 convolution, BatchNorm
and ReLU, average them globally and classify them with one linear layer, so they cost a small share of the
backbone's MACs and accept any input size. The forward pass returns a list: each exit's logits, then the
final classifier's (as :mod:`distiller.models.cifar10.resnet_cifar_earlyexit`).
"""
import torch
import torch.nn as nn
import torchvision

from ..early_exit import attach_exit, pop_exit_outputs
from ..registry import register_model
from .resnet import CONFIGS

#: ``(module whose output an exit reads, its channels, the exit's squeezed width)``, in forward order.
EXITS = (("layer1.2.relu3", 256, 64), ("layer2.3.relu3", 512, 128))


def exit_branch(channels: int, width: int, num_classes: int) -> nn.Sequential:
    """An exit classifier: 1x1 convolution to ``width`` channels, BatchNorm, ReLU, global average, linear."""
    return nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


class ResNetEarlyExit(torchvision.models.ResNet):
    """Distiller's ResNet-50 with the exits of :data:`EXITS`."""

    def __init__(self, num_classes: int = 1000) -> None:
        block, layers, kwargs = CONFIGS["resnet50"]
        super().__init__(block, list(layers), num_classes=num_classes, **kwargs)
        for module_name, channels, width in EXITS:
            attach_exit(self, module_name, exit_branch(channels, width, num_classes))

    # early-exit models return every exit's logits, where a ResNet returns one tensor
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        final = super().forward(x)
        return pop_exit_outputs(self) + [final]


@register_model("imagenet")
def resnet50_earlyexit(num_classes: int = 1000) -> ResNetEarlyExit:
    return ResNetEarlyExit(num_classes)
