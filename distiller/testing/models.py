"""Tiny models (fast on CPU) and the canonical six-callback training loop."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from ..scheduler import CompressionScheduler


class TinyCNN(nn.Module):
    """conv1-bn1-relu -> conv2-bn2-relu -> global pool -> fc, for 3x8x8 inputs (any size works)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class TinyResidualNet(nn.Module):
    """A stem and one residual block (functional add), to exercise coupled channels."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.block_conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.block_bn1 = nn.BatchNorm2d(width)
        self.block_conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.block_bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.block_bn1(self.block_conv1(x)))
        out = self.block_bn2(self.block_conv2(out))
        x = torch.relu(out + x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))



class TinyConcatNet(nn.Module):
    """Two 1x1 convolutions (4 and 6 filters) concatenated and read by a third: each producer owns a slice
    of the reader's input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def train_with_scheduler(model: nn.Module, optimizer: torch.optim.Optimizer,
                         scheduler: Optional[CompressionScheduler],
                         batches: Sequence[tuple[torch.Tensor, torch.Tensor]], epochs: int, start_epoch: int = 0,
                         criterion: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
                         ) -> Optional[torch.Tensor]:
    """Runs ``epochs`` epochs over ``batches`` (a list of (input, target)) calling all six callbacks.

    The batch order of epoch ``e`` is a fixed permutation seeded by ``e``, so a run resumed at any epoch
    sees the same data as an uninterrupted one. Returns the last loss (None when nothing ran).
    """
    criterion = criterion or nn.CrossEntropyLoss()
    loss: Optional[torch.Tensor] = None
    for epoch in range(start_epoch, start_epoch + epochs):
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(epoch)).tolist()
        if scheduler is not None:
            scheduler.on_epoch_begin(epoch, optimizer)
        for step, index in enumerate(order):
            inputs, target = batches[index]
            if scheduler is not None:
                scheduler.on_minibatch_begin(epoch, step, len(batches), optimizer)
            loss = criterion(model(inputs), target)
            if scheduler is not None:
                loss = cast(torch.Tensor, scheduler.before_backward_pass(epoch, step, len(batches), loss, optimizer))
            optimizer.zero_grad()
            loss.backward()
            if scheduler is not None:
                scheduler.before_parameter_optimization(epoch, step, len(batches), optimizer)
            optimizer.step()
            if scheduler is not None:
                scheduler.on_minibatch_end(epoch, step, len(batches), optimizer)
        if scheduler is not None:
            metrics = None if loss is None else {"min": loss.item(), "max": -loss.item()}
            scheduler.on_epoch_end(epoch, optimizer, metrics=metrics)
    return loss
