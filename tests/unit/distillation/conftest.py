"""Fixtures of the distillation tests: tiny students and teachers, 32x32 batches (the digits input format) and a
checkpoint of a trained-looking resnet20_cifar teacher at the path the YAML example names."""
import os

import pytest
import torch

from distiller.apputils import save_checkpoint
from distiller.models import create_model
from distiller.testing import TinyCNN


@pytest.fixture
def images():
    """Three (input, target) batches of eight 3x32x32 images."""
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(3)]


@pytest.fixture
def student():
    torch.manual_seed(0)
    return TinyCNN()


@pytest.fixture
def teacher():
    """A wider TinyCNN (16 channels after conv1 where the student has 8)."""
    torch.manual_seed(1)
    return TinyCNN(width=16)


@pytest.fixture
def teacher_checkpoint(tmp_path, monkeypatch):
    """``teacher.pth.tar`` (a resnet20_cifar checkpoint) in the working directory, which becomes ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(2)
    model = create_model(False, "digits", "resnet20_cifar", device_ids=-1)
    os.replace(save_checkpoint(0, "resnet20_cifar", model, name="teacher", dir=str(tmp_path)), "teacher.pth.tar")
    return "teacher.pth.tar"
