"""Distiller's own models (and the torchvision models it patched) are built under Distiller's names with
Distiller's layout: exactly its parameter names, shapes and order, and at least its named modules with their
types (``tests/data/distiller_models.txt``, a copy of the facts in ``distiller-api/models.txt``), so that
Distiller's schedules, quantizer overrides and checkpoints apply by name. Each model also classifies a tiny
batch."""
from pathlib import Path

import pytest
import torch

from distiller.models import create_model

FACTS = Path(__file__).parents[2] / "data" / "distiller_models.txt"


def read_layouts(path: Path) -> dict:
    """``{(dataset, arch): (modules, parameters)}``: lists of ``(name, type)`` and ``(name, shape)``."""
    layouts, current = {}, None
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("== "):
            current = layouts.setdefault(tuple(line[3:].split("/")), ([], []))
            continue
        kind, name, value = line.split(" ")
        if kind == "M":
            current[0].append((name, value))
        else:
            current[1].append((name, tuple(int(size) for size in value.split("x"))))
    return layouts


LAYOUTS = read_layouts(FACTS)
# over a second to build and run on one CPU thread
SLOW = {"resnet1202_cifar_earlyexit", "alexnet_bn", "inception_v3", "preact_resnet34", "preact_resnet50",
        "preact_resnet101", "preact_resnet152"}
# the smallest input each model accepts: fixed-size pooling (as in Distiller) needs the full resolution
INPUT_SIZE = {"cifar10": 32, "mnist": 28, "imagenet": 224}
SMALL_IMAGENET_INPUT = {"googlenet": 64, "inception_v3": 80, "mobilenet_v2": 64, "mobilenet_v1_dropout": 64}
NUM_CLASSES = {"cifar10": 10, "mnist": 10, "imagenet": 1000}
IN_CHANNELS = {"cifar10": 3, "mnist": 1, "imagenet": 3}


@pytest.fixture(scope="module", params=[
    pytest.param(key, id="/".join(key), marks=[pytest.mark.slow] if key[1] in SLOW else [])
    for key in sorted(LAYOUTS)])
def built(request):
    """``(dataset, arch, model)``, each model built once for all the tests below."""
    dataset, arch = request.param
    torch.manual_seed(0)
    return dataset, arch, create_model(False, dataset, arch, parallel=False, device_ids=-1)


def test_the_facts_cover_every_distiller_model():
    assert len(LAYOUTS) == 47
    assert {dataset for dataset, _ in LAYOUTS} == {"cifar10", "mnist", "imagenet"}
    assert all(modules and parameters for modules, parameters in LAYOUTS.values())


def test_parameters_and_modules_match_distiller(built):
    dataset, arch, model = built
    modules, parameters = LAYOUTS[dataset, arch]
    assert [(name, tuple(p.shape)) for name, p in model.named_parameters()] == parameters
    ours = {name: type(module).__name__ for name, module in model.named_modules()}
    wrong = [(name, kind, ours.get(name)) for name, kind in modules if ours.get(name) != kind]
    assert not wrong, f"{len(wrong)} of Distiller's modules missing or of another type: {wrong[:5]}"


def test_model_classifies_a_tiny_batch(built):
    dataset, arch, model = built
    size = SMALL_IMAGENET_INPUT.get(arch, INPUT_SIZE[dataset])
    # training mode: batch-norm uses the batch's statistics (an untrained 1202-layer network overflows with
    # the initial running statistics), and models with auxiliary classifiers must still return plain logits
    with torch.no_grad():
        outputs = model.train()(torch.randn(2, IN_CHANNELS[dataset], size, size))
    # early-exit models return every exit's logits, the final classifier's last
    outputs = outputs if isinstance(outputs, list) else [outputs]
    assert len(outputs) == (2 if arch.endswith("_earlyexit") else 1)
    for logits in outputs:
        assert logits.shape == (2, NUM_CLASSES[dataset]) and torch.isfinite(logits).all()
