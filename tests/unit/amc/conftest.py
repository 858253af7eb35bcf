"""Tiny models for the AMC tests."""
import torch
from torch import nn


class DepthwiseNet(nn.Module):
    """stem (8) -> depthwise 3x3 -> pointwise (12) -> pool -> fc: a depthwise layer's MACs follow one width."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 12, 1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(torch.relu(self.depthwise(torch.relu(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(x), 1), 1))


def constant_scores(model: nn.Module) -> tuple[float, float, float]:
    """An ``evaluate_fn`` that does not look at the data."""
    return 50.0, 90.0, 1.0


EXAMPLE = torch.zeros(1, 3, 8, 8)
