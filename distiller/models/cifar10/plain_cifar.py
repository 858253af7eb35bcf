"""The "plain" 20-layer baseline of He et al. 2016 ("Deep Residual Learning for Image Recognition", section
4.2): ``resnet20_cifar`` without its shortcuts, used to show what the residual connections contribute.
``plain20_cifar_nobn`` also drops batch normalisation (as in Distiller, its convolutions keep no bias).

Module and parameter names follow ``resnet20_cifar`` (``layer1.0.conv1.weight``, ...), so schedules written
for one apply to the other.
"""
from ..registry import register_model
from .resnet_cifar import ResNetCifar


class PlainCifar(ResNetCifar):
    """A plain (shortcut-free) network of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, batch_norm: bool = True) -> None:
        super().__init__(blocks_per_stage, num_classes, residual=False, batch_norm=batch_norm)


@register_model("cifar10")
def plain20_cifar(num_classes: int = 10) -> PlainCifar:
    return PlainCifar(3, num_classes)


@register_model("cifar10")
def plain20_cifar_nobn(num_classes: int = 10) -> PlainCifar:
    return PlainCifar(3, num_classes, batch_norm=False)
