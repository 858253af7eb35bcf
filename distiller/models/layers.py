"""Building blocks shared by the model zoo's architectures."""
from typing import Optional

import torch.nn as nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 and no bias (a batch-norm layer follows it)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 1x1 convolution with no bias (projection shortcuts, bottlenecks)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> Optional[nn.Sequential]:
    """The 1x1 convolution + batch-norm shortcut of He et al. 2016 (option B), or None when the block keeps
    its input's shape (an identity shortcut)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def zero_pad_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The parameter-free shortcut of He et al. 2016 (option A) in Distiller's form: ``stride`` x ``stride``
    average pooling, then zero channels padded on both sides up to ``out_channels``."""
    pad_before = (out_channels - in_channels) // 2
    pad_after = out_channels - in_channels - pad_before
    return nn.Sequential(nn.AvgPool2d(stride), nn.ConstantPad3d((0, 0, 0, 0, pad_before, pad_after), 0.0))


def init_weights(model: nn.Module) -> None:
    """He et al. 2015 (Kaiming normal, fan-out) initialisation of convolutions, unit/zero batch-norm affine
    parameters; linear layers keep PyTorch's default initialisation."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
