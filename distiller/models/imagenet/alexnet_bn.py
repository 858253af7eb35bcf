"""AlexNet (Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks", NIPS 2012)
in its single-tower form, with batch normalisation (Ioffe & Szegedy, ICML 2015) after every convolution and
hidden fully connected layer."""
import torch
import torch.nn as nn

from ..layers import init_weights
from ..registry import register_model

# (out_channels, kernel, stride, padding, max-pool after)
CONV_LAYERS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
               (256, 3, 1, 1, True))


def make_features():
    layers, in_channels = [], 3
    for out_channels, kernel, stride, padding, pool in CONV_LAYERS:
        layers += [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False),
                   nn.BatchNorm2d(out_channels), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        in_channels = out_channels
    return nn.Sequential(*layers)


class AlexNetBN(nn.Module):
    """Five conv-BN-ReLU layers (three max-pools), then two 4096-wide FC-BN-ReLU layers and a classifier."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = make_features()
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(),
            nn.Linear(4096, num_classes))
        init_weights(self)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model("imagenet")
def alexnet_bn(num_classes=1000):
    return AlexNetBN(num_classes)
