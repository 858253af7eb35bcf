"""Helpers for the thinning tests: a model written with functional ops, random structure masks, BN setup."""
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distiller.scheduler import create_model_masks_dict


def channel_shuffle(x, groups):
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    return torch.transpose(x, 1, 2).contiguous().view(batch, channels, height, width)


class BranchyNet(nn.Module):
    """Concatenation + residual, depthwise and grouped convs, a squeeze-excitation gate, a dynamic split,
    a channel shuffle, functional activations and pools, and a Linear after ``view``."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Conv2d(16, 8, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 16, 1, groups=4)
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.right = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(16 * 2 * 2, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1) + x
        x = F.relu6(self.dw_bn(self.dw(x)))
        x = self.grouped(x)
        x = x * torch.sigmoid(self.se_expand(F.relu(self.se_reduce(F.adaptive_avg_pool2d(x, 1)))))
        left, right = torch.split(x, x.shape[1] // 2, dim=1)
        x = channel_shuffle(torch.cat([self.left(left), self.right(right)], 1), 2)
        x = F.adaptive_avg_pool2d(F.max_pool2d(x, 2), 2)
        return self.fc(x.view(x.size(0), -1))


def randomize_batchnorm(model, generator, shift=False):
    """Random BN statistics and scales, in eval mode. The bias maps a zero input to zero (so a zero filter
    gives a zero channel and removing it is exact), or with ``shift`` is random (a zero filter's channel then
    leaves its BN as a constant, unless the BN's weight and bias are pruned with it)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            def uniform(low, high, size=module.num_features):
                return torch.empty(size).uniform_(low, high, generator=generator)
            with torch.no_grad():
                module.running_mean.copy_(uniform(-1, 1))
                module.running_var.copy_(uniform(0.5, 2))
                module.weight.copy_(uniform(0.5, 1.5))
                zero_to_zero = module.weight * module.running_mean / torch.sqrt(module.running_var + module.eps)
                module.bias.copy_(uniform(-1, 1) if shift else zero_to_zero)


def prune_randomly(model, fraction, structure, generator, skip=()):
    """Masks a random ``fraction`` of the filters (and their biases) or input channels of every conv and
    linear layer; returns the masks dict (masks applied to the weights)."""
    masks = create_model_masks_dict(model)
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or name in skip:
            continue
        weight = module.weight
        size = weight.shape[0] if structure == "Filters" else weight.shape[1]
        zero = (torch.rand(size, generator=generator) < fraction).to(weight.device)
        mask = torch.ones_like(weight)
        if structure == "Filters":
            mask[zero] = 0
            if module.bias is not None:
                masks[f"{name}.bias"].mask = (~zero).to(weight.dtype)
        else:
            mask[:, zero] = 0
        masks[f"{name}.weight"].mask = mask
    with torch.no_grad():
        for name, param in model.named_parameters():
            masks[name].apply_mask(param)
    return masks


def train_step(model, optimizer, inputs):
    """One forward/backward/step in train mode; leaves the gradients in place."""
    model.train()
    optimizer.zero_grad()
    model(inputs).square().mean().backward()
    optimizer.step()
    model.eval()


@pytest.fixture(autouse=True)
def single_thread():
    """These tests run many small ops, for which thread hand-offs cost more than they save (and a busy
    2-core CI machine makes OpenMP threads spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kit():
    return types.SimpleNamespace(BranchyNet=BranchyNet, randomize_batchnorm=randomize_batchnorm,
                                 prune_randomly=prune_randomly, train_step=train_step,
                                 generator=torch.Generator().manual_seed(0))
