"""Distiller's model helpers (distiller.model_tools, importable from distiller.utils)."""
import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.utils import (assign_layer_fq_names, convert_tensors_recursively_to, find_module_by_fq_name,
                             get_dummy_input, get_nonparallel_clone_model, has_children, make_non_parallel_copy,
                             model_setattr, optimizer_device_name, param_name_2_module_name,
                             set_model_input_shape_attr)


def nested_parallel_model():
    inner = nn.Sequential(nn.Linear(4, 4), nn.DataParallel(nn.Sequential(nn.Linear(4, 2))))
    return nn.DataParallel(inner)


def test_make_non_parallel_copy_removes_wrappers_at_every_depth_without_touching_the_model():
    model = nested_parallel_model()
    copy = make_non_parallel_copy(model)
    assert not any(isinstance(m, nn.DataParallel) for m in copy.modules())
    assert [n for n, _ in copy.named_parameters()] == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]
    assert isinstance(model, nn.DataParallel) and isinstance(model.module[1], nn.DataParallel)
    assert copy[0].weight is not model.module[0].weight and torch.equal(copy[0].weight, model.module[0].weight)
    assert get_nonparallel_clone_model is make_non_parallel_copy


def test_has_children_and_param_owner_names():
    assert has_children(nn.Sequential(nn.ReLU())) and not has_children(nn.ReLU())
    assert param_name_2_module_name("layer1.0.conv1.weight") == "layer1.0.conv1"
    assert param_name_2_module_name("bias") == ""


def test_assign_layer_fq_names_sets_distiller_name(tiny_model):
    assign_layer_fq_names(tiny_model)
    assert tiny_model.conv1.distiller_name == "conv1" and tiny_model.distiller_name == ""
    assign_layer_fq_names(tiny_model, name="net")
    assert tiny_model.bn2.distiller_name == "net.bn2"
    assert find_module_by_fq_name(tiny_model, "module.fc") is tiny_model.fc


def test_model_setattr_replaces_modules_and_registers_tensors():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    model_setattr(model, "0.0", nn.Identity())
    assert isinstance(model[0][0], nn.Identity)
    model_setattr(model, "0.scale", torch.ones(3), register=True)
    assert "0.scale" in model.state_dict()
    model_setattr(model, "0.scale", torch.zeros(3), register=True)
    assert torch.equal(model.state_dict()["0.scale"], torch.zeros(3))
    model_setattr(model, "0.gain", nn.Parameter(torch.ones(1)), register=True)
    assert "0.gain" in dict(model.named_parameters())
    model_setattr(model, "0.note", torch.ones(1))  # no register: a plain attribute, not in the state dict
    assert "0.note" not in model.state_dict()
    with pytest.raises(ArgumentError, match="no 'missing' on the way"):
        model_setattr(model, "missing.conv", nn.Identity())


def test_optimizer_device_name_and_recursive_moves():
    layer = nn.Linear(2, 2)
    assert optimizer_device_name(torch.optim.SGD(layer.parameters(), lr=0.1)) == "cpu"
    with pytest.raises(ArgumentError, match="no parameters"):
        optimizer_device_name(torch.optim.SGD([{"params": []}], lr=0.1))
    moved = convert_tensors_recursively_to((torch.ones(1), [torch.zeros(2), "label"], 3), dtype=torch.float64)
    assert moved[0].dtype == torch.float64 and moved[1][0].dtype == torch.float64
    assert isinstance(moved[1], list) and moved[1][1] == "label" and moved[2] == 3


def test_get_dummy_input_from_dataset_or_shapes():
    assert get_dummy_input("cifar10").shape == (1, 3, 32, 32)
    assert get_dummy_input("mnist", device="cpu").device.type == "cpu"
    nested = get_dummy_input(input_shape=((1, 4), ((1, 2), (2, 3))))
    assert nested[0].shape == (1, 4) and nested[1][1].shape == (2, 3)
    for bad in ({}, {"dataset": "cifar10", "input_shape": (1, 3)}, {"input_shape": ()}, {"input_shape": "1x3"}):
        with pytest.raises(ArgumentError):
            get_dummy_input(**bad)
    with pytest.raises(ArgumentError, match="unknown dataset 'cifar1'"):
        get_dummy_input("cifar1")


def test_set_model_input_shape_attr_keeps_an_existing_shape(tiny_model):
    set_model_input_shape_attr(tiny_model, "imagenet")
    assert tiny_model.input_shape == (1, 3, 224, 224)
    set_model_input_shape_attr(tiny_model, input_shape=(1, 3, 8, 8))
    assert tiny_model.input_shape == (1, 3, 224, 224)
