"""Small LeNet-style networks for 28x28 grey-scale digits (LeCun et al., "Gradient-based learning applied to
document recognition", Proc. IEEE 1998).

``simplenet_mnist`` uses max pooling; ``simplenet_v2_mnist`` is the same network with average pooling,
which keeps every layer linear between the ReLUs (convenient for quantization experiments).
"""
import torch
import torch.nn as nn

from ..registry import register_model


class SimpleNetMnist(nn.Module):
    """conv(20, 5x5) - pool - conv(50, 5x5) - pool - fc(500) - fc(num_classes), ReLU activations."""

    def __init__(self, num_classes=10, pooling=nn.MaxPool2d):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.relu1 = nn.ReLU()
        self.pool1 = pooling(2, 2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = pooling(2, 2)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@register_model("mnist")
def simplenet_mnist(num_classes=10):
    return SimpleNetMnist(num_classes)


@register_model("mnist")
def simplenet_v2_mnist(num_classes=10):
    return SimpleNetMnist(num_classes, pooling=nn.AvgPool2d)
