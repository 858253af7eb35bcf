"""A LeNet-5-style network for 32x32 RGB images (LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998): two 5x5 convolutions with max pooling and three fully connected layers."""
import torch
import torch.nn as nn

from ..registry import register_model


class SimpleNetCifar(nn.Module):
    """conv(6) - pool - conv(16) - pool - fc(120) - fc(84) - fc(num_classes), ReLU activations."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.relu_conv1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu_conv2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu_fc2 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu_conv1(self.conv1(x)))
        x = self.pool2(self.relu_conv2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu_fc1(self.fc1(x))
        x = self.relu_fc2(self.fc2(x))
        return self.fc3(x)


@register_model("cifar10")
def simplenet_cifar(num_classes: int = 10) -> SimpleNetCifar:
    return SimpleNetCifar(num_classes)
