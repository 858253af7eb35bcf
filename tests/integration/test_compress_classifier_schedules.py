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
SCHEDULE_DIRS = ("agp-pruning", "baseline_networks", "sensitivity-pruning", "network_surgery", "fusion")
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


def results_table():
    """Rows of examples/README.md's digits results table: (schedule path, top-1, sparsity, times) cells."""
    with open(os.path.join(EXAMPLES, "README.md"), encoding="utf-8") as f:
        rows = re.findall(r"^\| \[`([^`]+)`\]\([^)]*\)[^|]*\| \d+ \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", f.read(),
                          re.MULTILINE)
    return [(os.path.join(EXAMPLES, path), *(cell.strip() for cell in cells)) for path, *cells in rows]


def test_the_results_table_lists_the_digits_schedules():
    assert len(results_table()) >= 15


@pytest.mark.parametrize("path, top1, sparsity, times", results_table(),
                         ids=lambda value: os.path.relpath(value, EXAMPLES) if os.path.isabs(str(value)) else None)
def test_examples_readme_results_are_those_in_the_schedule_header(path, top1, sparsity, times):
    """The README's table quotes each schedule's own header, so neither can change alone."""
    header = header_of(path)
    assert f"top-1 {top1}" in header
    removed = re.search(r"([\d.]+)% (?:of the weights )?removed by thinning", sparsity)
    if removed:  # the share of the 270,896 conv/fc weights gone: from the header's '270,896 -> N' or '(N left)'
        left = re.search(r"270,896\s*(?:#\s*)?-> ([\d,]+)|\(([\d,]+) left\)", header)
        left = int((left.group(1) or left.group(2)).replace(",", ""))
        assert f"{100 * (1 - left / 270896):.2f}" == removed.group(1)
    else:
        assert re.match(r"[\d.]+%", sparsity).group(0) in header
    wall, cpu = re.match(r"(\d+) s / (\d+) s$", times).groups()
    assert re.search(rf"\b{wall} s wall(-clock)? / {cpu} s CPU", header), "the header must give the same run's times"
