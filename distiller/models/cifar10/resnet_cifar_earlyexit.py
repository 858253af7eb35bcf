"""CIFAR-10 ResNets with an early exit after the first stage (Distiller's ``resnet*_cifar_earlyexit``).

The exit reads the output of ``layer1.2.relu2`` (16x32x32), pools it 3x3 (to 16x10x10) and classifies it
with one linear layer. The forward pass returns a list: the exit's logits, then the final classifier's.
"""
import torch
import torch.nn as nn

from ..early_exit import attach_exit, pop_exit_outputs
from ..registry import register_model
from .resnet_cifar import ResNetCifar

EXIT_AFTER = "layer1.2.relu2"


class ResNetCifarEarlyExit(ResNetCifar):
    """``ResNetCifar`` with an exit classifier after ``layer1.2`` (needs ``blocks_per_stage >= 3``)."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__(blocks_per_stage, num_classes)
        attach_exit(self, EXIT_AFTER, nn.Sequential(nn.AvgPool2d(3), nn.Flatten(), nn.Linear(1600, num_classes)))

    # Distiller's early-exit models return every exit's logits, where a ResNetCifar returns one tensor.
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        final = super().forward(x)
        return pop_exit_outputs(self) + [final]


@register_model("cifar10")
def resnet20_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(3, num_classes)


@register_model("cifar10")
def resnet32_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(5, num_classes)


@register_model("cifar10")
def resnet44_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(7, num_classes)


@register_model("cifar10")
def resnet56_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(9, num_classes)


@register_model("cifar10")
def resnet110_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(18, num_classes)


@register_model("cifar10")
def resnet1202_cifar_earlyexit(num_classes: int = 10) -> ResNetCifarEarlyExit:
    return ResNetCifarEarlyExit(200, num_classes)
