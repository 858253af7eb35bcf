"""Every example schedule of the classifier application loads against the architecture its header names,
and its header gives a runnable command and a result."""
import glob
import os
import re

import pytest
import torch

import distiller
from distiller.models import create_model, datasets_of_arch

pytestmark = pytest.mark.slow

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
SCHEDULE_DIRS = ("agp-pruning", "baseline_networks", "sensitivity-pruning", "network_surgery")
# Structure-pruning schedules (``*filters*``, ``*channels*``) are tested with the thinning code.
SCHEDULES = sorted(path for directory in SCHEDULE_DIRS
                   for path in glob.glob(os.path.join(EXAMPLES, directory, "**", "*.yaml"), recursive=True)
                   if not re.search(r"filters|channels", os.path.basename(path)))


def header_of(path):
    with open(path) as f:
        return "".join(line for line in f if line.startswith("#"))


def test_there_are_schedules_for_digits_cifar_and_imagenet():
    names = [os.path.basename(path) for path in SCHEDULES]
    assert any("digits" in n for n in names) and any("cifar" in n for n in names)
    assert any(n.startswith(("alexnet", "resnet18")) for n in names)


@pytest.mark.parametrize("path", SCHEDULES, ids=lambda p: os.path.relpath(p, EXAMPLES))
def test_schedule_loads_and_header_documents_command_and_result(path):
    header = header_of(path)
    assert "compress_classifier.py" in header, "the header must give the command"
    assert f"--compress examples/{os.path.relpath(path, EXAMPLES)}" in header, "the command must use this file"
    assert re.search(r"^# Result", header, re.MULTILINE) and "PLACEHOLDER" not in header
    arch = re.search(r"-a (\S+)", header).group(1)
    model = create_model(False, datasets_of_arch(arch)[0], arch, device_ids=-1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = distiller.file_config(model, optimizer, path)
    epochs = int(re.search(r"--epochs (\d+)", header).group(1))
    assert max(scheduler.policies) < epochs, "the command's --epochs must cover every scheduled epoch"
