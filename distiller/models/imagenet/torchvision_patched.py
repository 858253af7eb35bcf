"""The torchvision models that Distiller patched, under their torchvision names (torchvision's own stay
available as ``torchvision.<name>``):

* ``mobilenet_v2`` (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018):
  each inverted residual block with a shortcut sums through the ``EltwiseAdd`` module
  ``residual_eltwiseadd``, and global average pooling is the ``Mean`` modules ``mean32.0``/``mean32.1``,
  so quantizers see both operations.
* ``googlenet`` (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015) and ``inception_v3`` (Szegedy
  et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016): built, as in Distiller,
  with their auxiliary classifiers (``aux1``/``aux2``, ``AuxLogits``), so Distiller's parameter names and
  checkpoints apply. Unlike torchvision's, the forward pass returns the main logits only, in training too,
  and does not run the auxiliary classifiers: every classification loop expects one logits tensor.

Parameters are torchvision's, so torchvision's pretrained weights load unchanged.
"""
import functools
from typing import Any

import torch
import torch.nn as nn
import torchvision
from torchvision.models import mobilenetv2

from ...modules import EltwiseAdd, Mean
from ..registry import ModelBuilder
from .weights import with_torchvision_weights


class InvertedResidual(mobilenetv2.InvertedResidual):
    """torchvision's block; the shortcut sum is the ``residual_eltwiseadd`` module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_res_connect:
            self.residual_eltwiseadd = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return self.residual_eltwiseadd(self.conv(x), x)
        return self.conv(x)


class MobileNetV2(torchvision.models.MobileNetV2):
    """torchvision's MobileNet v2 with ``InvertedResidual`` blocks above and ``mean32`` pooling."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(num_classes=num_classes, block=InvertedResidual)
        self.mean32 = nn.Sequential(Mean(3), Mean(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.mean32(self.features(x)))


class GoogLeNet(torchvision.models.GoogLeNet):
    """torchvision's GoogLeNet with its auxiliary classifiers built but not run."""

    def __init__(self, num_classes: int = 1000, transform_input: bool = False) -> None:
        super().__init__(num_classes=num_classes, aux_logits=True, transform_input=transform_input,
                         init_weights=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for block in (self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e):
            x = block(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


class Inception3(torchvision.models.Inception3):
    """torchvision's Inception v3 with its auxiliary classifier built but not run."""

    def __init__(self, num_classes: int = 1000, transform_input: bool = False) -> None:
        super().__init__(num_classes=num_classes, aux_logits=True, transform_input=transform_input,
                         init_weights=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2, self.Mixed_5b, self.Mixed_5c,
                      self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c, self.avgpool, self.dropout):
            x = layer(x)
        return self.fc(torch.flatten(x, 1))


# name -> builder (``num_classes``; torchvision's pretrained weights expect the inputs re-normalised)
PATCHED = {"mobilenet_v2": MobileNetV2, "googlenet": GoogLeNet, "inception_v3": Inception3}
_PRETRAINED_KWARGS = {"googlenet": {"transform_input": True}, "inception_v3": {"transform_input": True}}


def patched_builders(name: str) -> tuple[ModelBuilder, ModelBuilder]:
    """``(build, build_pretrained)`` of Distiller's patched ``name``, for the registry."""
    build = PATCHED[name]
    return build, functools.partial(with_torchvision_weights,
                                    functools.partial(build, **_PRETRAINED_KWARGS.get(name, {})), name)
