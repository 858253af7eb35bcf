"""Training directives: freezing parameters (also as the scheduled FreezeTraining extension), dropout."""
import pytest
import torch
import yaml
from torch import nn

from distiller import FreezeTraining, adjust_dropout, freeze_all, freeze_training
from distiller.config import dict_config
from distiller.errors import ArgumentError, ScheduleError
from distiller.testing import TinyCNN, train_with_scheduler

SCHEDULE = """
extensions:
  freeze_features:
    class: FreezeTraining
    which_params: [conv, bn]

policies:
  - extension: {instance_name: freeze_features}
    starting_epoch: 1
    ending_epoch: 3
    frequency: 1
"""


def test_freeze_training_matches_name_parts(tiny_model):
    changed = freeze_training(tiny_model, ["conv", "bn1"], True)
    assert changed == ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight"]
    assert not tiny_model.conv2.weight.requires_grad and tiny_model.bn2.weight.requires_grad
    freeze_training(tiny_model, ["conv"], False)
    assert tiny_model.conv1.weight.requires_grad
    assert freeze_training(tiny_model, None, True) == []
    with pytest.raises(ArgumentError, match=r"no parameter name contains \['layer1'\]"):
        freeze_training(tiny_model, ["layer1"], True)
    freeze_all(tiny_model, True)
    assert not any(p.requires_grad for p in tiny_model.parameters())


def test_adjust_dropout_reaches_nested_dropout_layers():
    model = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Dropout2d(0.2), nn.Linear(2, 2)))
    adjust_dropout(model, 0.1)
    assert model[0].p == 0.1 and model[1][0].p == 0.1
    with pytest.raises(ArgumentError, match=r"adjust_dropout: argument 'new_probabilty' expects a number in \[0, 1\], "
                                             r"got 1.5"):
        adjust_dropout(model, 1.5)


def test_bad_which_params_is_the_same_error_from_python_and_yaml():
    with pytest.raises(ArgumentError) as python:
        FreezeTraining("freeze", which_params=["conv", 3])
    assert (python.value.argument, python.value.location) == ("which_params", (1,))
    assert "argument 'which_params[1]' expects a string, got 3" in str(python.value)
    schedule = yaml.safe_load(SCHEDULE)
    schedule["extensions"]["freeze_features"]["which_params"] = ["conv", 3]
    model = TinyCNN()
    with pytest.raises(ScheduleError) as from_yaml:
        dict_config(model, torch.optim.SGD(model.parameters(), lr=0.1), schedule)
    assert str(python.value) in str(from_yaml.value)
    assert from_yaml.value.path == "extensions.freeze_features.which_params[1]"


def test_scheduled_freeze_keeps_the_features_fixed_during_its_epochs(batches):
    torch.manual_seed(0)
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = dict_config(model, optimizer, yaml.safe_load(SCHEDULE))
    policy = next(p for p in scheduler.sched_metadata if isinstance(p, FreezeTraining))
    assert policy.name == "freeze_features"
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1)
    conv, fc = model.conv1.weight.detach().clone(), model.fc.weight.detach().clone()
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=2, start_epoch=1)
    assert torch.equal(model.conv1.weight, conv) and not torch.equal(model.fc.weight, fc)
    assert model.conv1.weight.requires_grad  # defrosted after the last scheduled epoch
    train_with_scheduler(model, optimizer, scheduler, batches, epochs=1, start_epoch=3)
    assert not torch.equal(model.conv1.weight, conv)
