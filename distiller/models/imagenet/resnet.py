"""Distiller's ImageNet ResNets: torchvision's ResNet, ResNeXt and Wide ResNet (He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016; Xie et al., "Aggregated Residual Transformations for Deep Neural
Networks", CVPR 2017; Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016) with blocks that quantizers
and activation statistics can see through: one ReLU module per use (``relu1``, ``relu2``; ``relu3`` in
bottlenecks) instead of one shared ``relu``, and the residual sum as the ``EltwiseAdd`` module ``add``.

Parameters (names, shapes, order) are torchvision's, so torchvision's pretrained weights load unchanged and
the network computes exactly what torchvision's computes. These models are registered under Distiller's
names (``resnet18`` ... ``wide_resnet101_2``); torchvision's own models stay available as
``torchvision.resnet18`` etc.
"""
import functools
from typing import Any

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

from ...modules import EltwiseAdd
from ..registry import ModelBuilder
from .weights import with_torchvision_weights


def reorder_children(module: nn.Module, order: tuple[str, ...]) -> None:
    """Re-registers ``module``'s children named in ``order`` in that order (absent ones are skipped), so that
    ``named_modules()`` lists them in execution order."""
    children = [(name, getattr(module, name)) for name in order if getattr(module, name, None) is not None]
    for name, _ in children:
        delattr(module, name)
    for name, child in children:
        module.add_module(name, child)


class DistillerBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` with ``relu1``, ``relu2`` and the ``add`` module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1, self.relu2, self.add = nn.ReLU(), nn.ReLU(), EltwiseAdd()
        reorder_children(self, ("conv1", "bn1", "relu1", "conv2", "bn2", "downsample", "add", "relu2"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.add(out, identity))


class DistillerBottleneck(Bottleneck):
    """torchvision's ``Bottleneck`` with ``relu1``, ``relu2``, ``relu3`` and the ``add`` module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1, self.relu2, self.relu3, self.add = nn.ReLU(), nn.ReLU(), nn.ReLU(), EltwiseAdd()
        reorder_children(self, ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "downsample",
                                "add", "relu3"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(self.add(out, identity))


# torchvision's configurations: block, blocks per stage, extra ResNet arguments (ResNeXt groups, widths)
CONFIGS = {
    "resnet18": (DistillerBasicBlock, (2, 2, 2, 2), {}),
    "resnet34": (DistillerBasicBlock, (3, 4, 6, 3), {}),
    "resnet50": (DistillerBottleneck, (3, 4, 6, 3), {}),
    "resnet101": (DistillerBottleneck, (3, 4, 23, 3), {}),
    "resnet152": (DistillerBottleneck, (3, 8, 36, 3), {}),
    "resnext50_32x4d": (DistillerBottleneck, (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (DistillerBottleneck, (3, 4, 23, 3), {"groups": 32, "width_per_group": 8}),
    "wide_resnet50_2": (DistillerBottleneck, (3, 4, 6, 3), {"width_per_group": 128}),
    "wide_resnet101_2": (DistillerBottleneck, (3, 4, 23, 3), {"width_per_group": 128}),
}
RESNET_NAMES = tuple(CONFIGS)


def distiller_resnet(name: str, num_classes: int = 1000) -> torchvision.models.ResNet:
    """Builds Distiller's variant of torchvision's ``name`` (one of ``RESNET_NAMES``), randomly initialised
    as torchvision initialises it."""
    block, layers, kwargs = CONFIGS[name]
    return torchvision.models.ResNet(block, list(layers), num_classes=num_classes, **kwargs)


def resnet_builders(name: str) -> tuple[ModelBuilder, ModelBuilder]:
    """``(build, build_pretrained)`` of Distiller's variant of ``name``, for the registry."""
    build = functools.partial(distiller_resnet, name)
    return build, functools.partial(with_torchvision_weights, build, name)
