"""A checkpoint that does not fit the model is refused, naming what differs; strict=False loads what fits."""
import copy
import inspect
import logging

import pytest
import torch

import distiller
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.errors import CheckpointError
from distiller.models import create_model
from distiller.testing import TinyCNN, TinyResidualNet


def _state(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _unchanged(model, before):
    return all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_signature_keeps_distillers_positions_and_defaults_to_strict():
    params = inspect.signature(load_checkpoint).parameters
    assert list(params)[:6] == ["model", "chkpt_file", "optimizer", "model_device", "lean_checkpoint", "strict"]
    assert params["strict"].default is True  # Distiller: False (a half-random model with a warning)
    assert "Distiller's default was ``False``" in load_checkpoint.__doc__


def test_checkpoint_of_a_deeper_resnet_is_refused_listing_names_and_architectures(tmp_path):
    resnet32 = create_model(False, "cifar10", "resnet32_cifar", device_ids=-1)
    path = save_checkpoint(0, "resnet32_cifar", resnet32, dir=str(tmp_path))
    resnet20 = create_model(False, "cifar10", "resnet20_cifar", device_ids=-1)
    before = _state(resnet20)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(resnet20, path)
    message = str(info.value)
    assert "(a 'resnet32_cifar' checkpoint) does not fit the given ResNetCifar model" in message
    # resnet32 has 5 blocks per stage, resnet20 3: blocks 3 and 4 of each stage (12 entries each) are unexpected
    assert "has 72 entries the model lacks ('layer1.3.conv1.weight', 'layer1.3.bn1.weight'" in message
    assert "and 67 more" in message and "of the model's entries" not in message  # nothing missing
    assert "strict=False" in message and "--load-non-strict" in message
    assert _unchanged(resnet20, before)


def test_missing_entries_are_listed_with_their_count(tmp_path):
    path = save_checkpoint(0, "tiny_residual", TinyResidualNet(), dir=str(tmp_path))
    with pytest.raises(CheckpointError, match=r"lacks 6 of the model's entries \('conv2.weight', 'bn2.weight', "
                                              r"'bn2.bias', 'bn2.running_mean', 'bn2.running_var' and 1 more\); "
                                              r"has 12 entries the model lacks \('block_conv1.weight', .* "
                                              r"and 7 more\); "
                                              r"has 1 entry of another shape \['fc.weight': 10x8 in the checkpoint, "
                                              r"10x16 in the model\]"):
        load_checkpoint(TinyCNN(), path, expected_arch=None)
    with pytest.raises(CheckpointError, match="holds a 'tiny_residual' model but the requested architecture is 'tiny'"):
        load_checkpoint(TinyCNN(), path, expected_arch="tiny")


def test_non_strict_load_keeps_what_fits_and_says_what_stays_random(tmp_path, caplog):
    torch.manual_seed(0)
    source = TinyCNN()
    source.fc = torch.nn.Linear(16, 4)  # another head: fc.weight/fc.bias have other shapes
    scheduler = distiller.CompressionScheduler(source)
    scheduler.zeros_mask_dict["fc.weight"].mask = torch.ones(4, 16)
    scheduler.zeros_mask_dict["conv1.weight"].mask = (source.conv1.weight.abs() > 0.1).float()
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1)
    path = save_checkpoint(0, "tiny", source, optimizer, scheduler, dir=str(tmp_path))
    target = TinyCNN()
    fc_before = target.fc.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="distiller.apputils.checkpoint"):
        model, loaded, opt, _ = load_checkpoint(target, path, strict=False)
    assert torch.equal(model.conv1.weight, source.conv1.weight) and torch.equal(model.fc.weight, fc_before)
    assert loaded.zeros_mask_dict["conv1.weight"].mask is not None
    assert loaded.zeros_mask_dict["fc.weight"].mask is None  # the 4x16 mask fits no parameter: dropped
    assert opt is None  # the optimizer state belongs to the other head
    text = caplog.text
    assert "lacks 2 model entries (missing or of another shape), left at their initial values: 'fc.weight', " \
           "'fc.bias'" in text
    assert "dropped 1 mask(s)" in text and "optimizer state" in text


def test_mask_of_an_unknown_parameter_is_refused_in_strict_mode(tmp_path):
    model = TinyCNN()
    scheduler = distiller.CompressionScheduler(model)
    path = save_checkpoint(0, "tiny", model, scheduler=scheduler, dir=str(tmp_path))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["compression_sched"]["masks_dict"]["conv9.weight"] = torch.ones(3)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"has 1 mask the model lacks \('conv9.weight'\)"):
        load_checkpoint(TinyCNN(), path)


def test_optimizer_with_other_groups_is_refused_before_the_model_changes(tmp_path):
    model = TinyCNN()
    optimizer = torch.optim.SGD([{"params": [model.conv1.weight]}, {"params": list(model.fc.parameters())}], lr=0.1)
    path = save_checkpoint(0, "tiny", model, optimizer, dir=str(tmp_path))
    target = TinyCNN()
    before = _state(target)
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[8\], but the one saved .* has \[1, 2\]"):
        load_checkpoint(target, path, optimizer=torch.optim.SGD(target.parameters(), lr=0.1))
    assert _unchanged(target, before)


def test_stale_saved_optimizer_is_refused_unless_loading_weights_only(tmp_path):
    model = TinyCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.fc = torch.nn.Linear(16, 10)  # the optimizer still holds the old fc parameters
    path = save_checkpoint(0, "tiny", model, optimizer, dir=str(tmp_path))
    with pytest.raises(CheckpointError, match=r"holds 2 parameters the model does not have: .*\(lean_checkpoint=True"):
        load_checkpoint(TinyCNN(), path)
    assert torch.equal(load_checkpoint(TinyCNN(), path, lean_checkpoint=True)[0].fc.weight, model.fc.weight)


def test_refused_thinned_checkpoint_leaves_the_model_unthinned(tmp_path, batches):
    model = TinyCNN()
    scheduler = distiller.CompressionScheduler(model)
    mask = torch.ones_like(model.conv1.weight)
    mask[:3] = 0
    scheduler.zeros_mask_dict["conv1.weight"].mask = mask
    scheduler.mask_all_weights()
    distiller.thinning.remove_filters(model, scheduler.zeros_mask_dict, dummy_input=batches[0][0], scheduler=scheduler)
    path = save_checkpoint(0, "tiny", model, scheduler=scheduler, dir=str(tmp_path))
    other = TinyCNN(num_classes=4)
    before = copy.deepcopy(other)
    with pytest.raises(CheckpointError, match="'fc.weight': 10x16 in the checkpoint, 4x16 in the model"):
        load_checkpoint(other, path)
    assert other.conv1.out_channels == 8 and _unchanged(other, before.state_dict())


def test_unknown_transform_kind_is_refused_before_any_change(tmp_path):
    model = TinyCNN()
    scheduler = distiller.CompressionScheduler(model)
    scheduler.record_transform("origami", {})
    path = save_checkpoint(0, "tiny", model, scheduler=scheduler, dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="records a 'origami' model transform, but nothing is registered"):
        load_checkpoint(TinyCNN(), path)
