"""distiller.set_seed / set_deterministic: strict deterministic algorithms, the cuBLAS workspace setting, cuDNN."""
import logging
import os
import random

import numpy as np
import pytest
import torch

import distiller
from distiller.apputils.data_loaders import _make_loader
from distiller.utils import DETERMINISTIC_CUBLAS_CONFIGS


@pytest.fixture(autouse=True)
def restore_torch_state(monkeypatch):
    """set_deterministic changes process-wide settings: put them back after each test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # also restores the variable on teardown
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_set_seed_repeats_python_numpy_and_torch_draws():
    distiller.set_seed(7)
    first = _draws()
    distiller.set_seed(7)
    assert _draws() == first
    distiller.set_seed(8)
    assert all(a != b for a, b in zip(_draws(), first))


def test_set_deterministic_is_strict_and_sets_cudnn_and_cublas():
    torch.backends.cudnn.benchmark = True
    distiller.set_deterministic(3)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.initial_seed() == 3


def test_strict_mode_raises_for_an_op_without_deterministic_kernel():
    distiller.set_deterministic(0)
    target = torch.zeros(4)
    with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
        target.put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]), accumulate=False)


@pytest.mark.parametrize("config", DETERMINISTIC_CUBLAS_CONFIGS)
def test_a_deterministic_cublas_config_is_kept(monkeypatch, config):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", config)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # nothing to change, so no error either
    distiller.set_deterministic(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == config


def test_a_nondeterministic_cublas_config_is_replaced_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with caplog.at_level(logging.WARNING, logger="distiller.utils"):
        distiller.set_deterministic(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "':0:0' is not deterministic" in caplog.text


@pytest.mark.parametrize("config", [None, ":0:0"])
def test_too_late_after_cuda_initialisation_raises_and_changes_nothing(monkeypatch, config):
    if config is not None:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", config)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    torch.use_deterministic_algorithms(False)
    with pytest.raises(RuntimeError, match="after CUDA was initialised.*CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        distiller.set_deterministic(0)
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == config
    assert not torch.are_deterministic_algorithms_enabled()


def _train_steps(device, steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    inputs, target = torch.randn(16, 3, 12, 12, device=device), torch.randint(0, 10, (16,), device=device)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), target).backward()
        optimizer.step()
    return [p.detach().cpu() for p in model.parameters()]


def test_training_steps_are_bit_identical_on_cpu():
    distiller.set_deterministic(0)
    first, second = _train_steps("cpu"), _train_steps("cpu")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.cuda
def test_training_steps_are_bit_identical_on_cuda():
    distiller.set_deterministic(0)
    first, second = _train_steps("cuda"), _train_steps("cuda")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.cuda
def test_strict_mode_raises_for_adaptive_pooling_backward_on_cuda():
    """The one op of distiller's bundled models without a deterministic CUDA kernel (see set_deterministic)."""
    distiller.set_deterministic(0)
    x = torch.randn(2, 3, 12, 12, device="cuda", requires_grad=True)
    torch.nn.AdaptiveAvgPool2d(1)(x).sum().backward()  # a 1x1 output is a mean: deterministic
    with pytest.raises(RuntimeError, match="adaptive_avg_pool2d_backward_cuda"):
        torch.nn.AdaptiveAvgPool2d((6, 6))(x).sum().backward()


class _RandomlyAugmented(torch.utils.data.Dataset):
    """Item i is i plus a random shift drawn in the loader worker (like random crops or flips)."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return index + torch.rand(())


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return torch.cat(list(loader))


def test_deterministic_loader_workers_repeat_an_epoch_without_the_epochs_before():
    """A resumed run's loader starts at epoch e: its workers must draw what they drew in the uninterrupted run."""
    def make():
        return _make_loader(_RandomlyAugmented(), range(8), 1.0, True, batch_size=4, workers=1, seed=5,
                            deterministic=True, fixed_subset=False)
    uninterrupted = make()
    epochs = [_epoch(uninterrupted, e) for e in range(3)]
    assert not torch.equal(epochs[1] - epochs[1].floor(), epochs[2] - epochs[2].floor())  # fresh draws each epoch
    assert torch.equal(_epoch(make(), 2), epochs[2])
