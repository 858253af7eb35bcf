"""Tiny models with activation *modules* (quantizers replace modules, not functional calls)."""
import pytest
import torch
from torch import nn


class ReluCNN(nn.Module):
    """conv1-bn1-relu1 -> conv2-bn2-relu2 -> global pool -> fc, for 3x8x8 inputs."""

    def __init__(self, num_classes=4, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture
def relu_cnn():
    torch.manual_seed(0)
    return ReluCNN()


@pytest.fixture
def learnable_batches():
    """Four batches of a 4-class problem a tiny CNN learns in a few steps (sign of two channel means)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        x = torch.randn(32, 3, 8, 8, generator=generator)
        y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
        batches.append((x, y))
    return batches


def _train_steps(model, optimizer, quantizer, batches, steps):
    """Plain training loop calling quantize_params() after each step, as QuantizationPolicy does."""
    losses = []
    for step in range(steps):
        x, y = batches[step % len(batches)]
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        quantizer.quantize_params()
        losses.append(loss.item())
    return losses


@pytest.fixture
def train_steps():
    """``train_steps(model, optimizer, quantizer, batches, steps) -> losses``."""
    return _train_steps
