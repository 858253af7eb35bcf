"""AlexNet with batch normalisation in the configuration of the DoReFa-Net experiments (Zhou et al.,
"DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with Low Bitwidth Gradients", 2016), as
Distiller defined it: a 12x12/4 first convolution with a bias, then four bias-free convolutions (the 2nd,
4th and 5th in two groups, as in Krizhevsky et al. 2012), each followed by batch-norm, and two 4096-wide
bias-free fully connected layers with batch-norm before the classifier. No dropout.

Layer names are Distiller's (``features.N``, ``classifier.N``). Batch-norm uses Distiller's epsilon (1e-4)
but PyTorch's default momentum: Distiller's ``momentum=0.9`` copied TensorFlow's decay without converting
it (PyTorch's momentum weighs the *new* batch), which made the running statistics follow the last batch.
The network takes 224x224 inputs only.
"""
import torch
import torch.nn as nn

from ..layers import init_weights
from ..registry import register_model

BN_EPS = 1e-4


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, groups: int) -> list:
    """A bias-free, padded convolution and its batch-norm."""
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS)]


def fc_bn_relu(in_features: int, out_features: int) -> list:
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features, eps=BN_EPS), nn.ReLU()]


class AlexNetBN(nn.Module):
    """224x224 -> conv 54x54x96 -> 27x27x256 -> 14x14x384 -> 14x14x384 -> 6x6x256 -> 4096 -> 4096 -> classes."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=12, stride=4), nn.ReLU(),
            *conv_bn(96, 256, 5, groups=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
            *conv_bn(256, 384, 3, groups=1), nn.MaxPool2d(3, 2, padding=1), nn.ReLU(),
            *conv_bn(384, 384, 3, groups=2), nn.ReLU(),
            *conv_bn(384, 256, 3, groups=2), nn.MaxPool2d(3, 2), nn.ReLU())
        self.classifier = nn.Sequential(*fc_bn_relu(256 * 6 * 6, 4096), *fc_bn_relu(4096, 4096),
                                        nn.Linear(4096, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("imagenet")
def alexnet_bn(num_classes: int = 1000) -> AlexNetBN:
    return AlexNetBN(num_classes)
