"""Small LeNet-style networks for 28x28 grey-scale digits (LeCun et al., "Gradient-based learning applied to
document recognition", Proc. IEEE 1998), with Distiller's layer names.

``simplenet_mnist``: two 5x5 convolutions (20 and 50 filters) with max pooling, then two fully connected
layers (800 -> 500 -> 10). ``simplenet_v2_mnist`` replaces the large fully connected layers by 4x4 average
pooling and one small classifier (50 -> 10): about 26K parameters instead of 431K.
"""
import torch
import torch.nn as nn

from ..registry import register_model


class SimpleNetMnist(nn.Module):
    """conv(20, 5x5) - pool - conv(50, 5x5) - pool, shared by both networks; ``head`` classifies."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        return self.pool2(self.relu2(self.conv2(x)))


class SimpleNet(SimpleNetMnist):
    """The feature extractor, then fc(500) - ReLU - fc(num_classes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.extract_features(x), 1)
        return self.fc2(self.relu3(self.fc1(x)))


class SimpleNetV2(SimpleNetMnist):
    """The feature extractor, then 4x4 average pooling and fc(num_classes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(4)
        self.fc = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.extract_features(x)), 1))


@register_model("mnist")
def simplenet_mnist(num_classes: int = 10) -> SimpleNet:
    return SimpleNet(num_classes)


@register_model("mnist")
def simplenet_v2_mnist(num_classes: int = 10) -> SimpleNetV2:
    return SimpleNetV2(num_classes)
