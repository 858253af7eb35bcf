"""Models from optional packages: ``timm:<name>`` through timm (a clear MissingDependencyError without it),
Cadene's ``pretrainedmodels`` under their own names when installed; Distiller's ``register_user_model``.
The packages are stood in for by small fakes with their real interfaces (timm: ``is_model``,
``list_models``, ``create_model``; pretrainedmodels: ``model_names`` and one builder per name)."""
import importlib.util
import logging
import sys
import types

import pytest
import torch.nn as nn

import distiller.models as models
from distiller.errors import ArgumentError, MissingDependencyError
from distiller.models import external, registry


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", registry.MODELS.copy())


def fake_timm(calls):
    timm = types.ModuleType("timm")
    timm.list_models = lambda: ["resnet50", "vit_base_patch16_224"]
    timm.is_model = lambda name: name.split(".")[0] in timm.list_models()

    def create_model(name, pretrained=False):
        calls.append((name, pretrained))
        return nn.Linear(2, 2)
    timm.create_model = create_model
    return timm


def test_timm_architectures_build_through_timm(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "timm", fake_timm(calls))
    model = models.create_model(False, "imagenet", "timm:resnet50.a1_in1k", device_ids=-1)
    assert isinstance(model, nn.Linear) and calls == [("resnet50.a1_in1k", False)]
    models.create_model(True, "imagenet", "timm:vit_base_patch16_224", device_ids=-1)
    assert calls[-1] == ("vit_base_patch16_224", True)
    assert models.datasets_of_arch("timm:resnet50") == ("imagenet",)
    with pytest.raises(ArgumentError, match=r"timm has no architecture 'resnet5'; did you mean 'resnet50'"):
        models.create_model(False, "imagenet", "timm:resnet5")


def test_timm_architectures_without_timm_name_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails as when it is not installed
    with pytest.raises(MissingDependencyError, match="pip install timm"):
        models.create_model(False, "imagenet", "timm:resnet50")


def test_pretrainedmodels_fill_free_names_only(fresh_registry):
    calls = []
    package = types.ModuleType("pretrainedmodels")
    package.model_names = ["fbresnet152", "resnet18"]
    for name in package.model_names:
        setattr(package, name, lambda num_classes, pretrained, name=name: calls.append((name, pretrained))
                or nn.Linear(2, num_classes))
    assert external.register_pretrainedmodels(package) == ["fbresnet152"]
    model = models.create_model(False, "imagenet", "fbresnet152", device_ids=-1)
    assert model.out_features == 1000 and calls == [("fbresnet152", None)]
    models.create_model(True, "imagenet", "fbresnet152", device_ids=-1)
    assert calls[-1] == ("fbresnet152", "imagenet")
    # Distiller's (and torchvision's) models keep their names
    assert type(models.create_model(False, "imagenet", "resnet18", device_ids=-1).layer1[0]).__name__ == \
        "DistillerBasicBlock"


def test_a_broken_pretrainedmodels_install_does_not_break_the_zoo(fresh_registry, monkeypatch, caplog):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "pretrainedmodels" else None)
    monkeypatch.setitem(sys.modules, "pretrainedmodels", None)
    with caplog.at_level(logging.WARNING, logger=external.__name__):
        external.register_installed()
    assert "pretrainedmodels is installed but cannot be imported" in caplog.text


def test_register_user_model_is_distillers_name_for_register_model(fresh_registry):
    models.register_user_model("tiny_mnist", "mnist", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    assert "tiny_mnist" in models.list_models("mnist")
    assert models.create_model(False, "mnist", "tiny_mnist", device_ids=-1)[1].in_features == 784
    with pytest.raises(ArgumentError, match="unknown dataset 'svhn'"):
        models.register_user_model("tiny_svhn", "svhn", nn.Identity)
