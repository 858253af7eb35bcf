"""DoReFa, PACT and WRPN quantization-aware training on a tiny CNN."""
import pytest
import torch
from torch import nn

import distiller
from distiller.errors import ArgumentError
from distiller.quantization import (ClippedLinearQuantization, DorefaQuantizer, LearnedClippedLinearQuantization,
                                    PACTQuantizer, WRPNQuantizer)
from distiller.quantization.base import ParamToQuant
from distiller.quantization.clipped_linear import dorefa_quantize_param, wrpn_quantize_param

OVERRIDES = {"fc": {"bits_weights": None}}


def _meta(bits):
    return ParamToQuant(None, "x", "weight", "weight", bits)


def test_dorefa_weights_lie_on_the_paper_grid():
    w = torch.randn(64, generator=torch.Generator().manual_seed(0))
    q = dorefa_quantize_param(w, _meta(3))
    levels = 2 * torch.arange(8) / 7 - 1  # 2 * k / (2^3 - 1) - 1
    assert torch.isin(q, levels).all() and q.max() == 1 and q.min() >= -1
    expected = 2 * torch.round((torch.tanh(w) / (2 * torch.tanh(w).abs().max()) + 0.5) * 7) / 7 - 1
    assert torch.allclose(q, expected)
    binary = dorefa_quantize_param(w, _meta(1))
    assert set(binary.unique().tolist()) == {-w.abs().mean().item(), w.abs().mean().item()}


def test_wrpn_weights_clip_to_unit_range():
    w = torch.tensor([-3.0, -0.5, 0.04, 0.2, 2.0], requires_grad=True)
    q = wrpn_quantize_param(w, _meta(4))  # 7 levels per side
    assert torch.allclose(q, torch.tensor([-1.0, -4 / 7, 0.0, 1 / 7, 1.0]))
    q.sum().backward()
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_clipped_activation_grid_and_gradients():
    act = ClippedLinearQuantization(2, 1.0)
    x = torch.tensor([-1.0, 0.1, 0.2, 0.5, 0.9, 2.0], requires_grad=True)
    y = act(x)
    assert torch.allclose(y, torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_pact_clip_value_gradient_is_the_saturated_part():
    act = LearnedClippedLinearQuantization(8, 2.0)
    x = torch.tensor([-1.0, 0.5, 1.5, 3.0, 5.0], requires_grad=True)
    y = act(x)
    assert y[-1] == 2.0 and y[0] == 0.0
    y.backward(torch.tensor([1.0, 1.0, 1.0, 2.0, 3.0]))
    assert act.clip_val.grad.item() == 5.0  # from the two inputs above alpha
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("cls, kwargs, act_type, max_levels", [
    (DorefaQuantizer, {}, ClippedLinearQuantization, 16),
    (PACTQuantizer, {"act_clip_init_val": 4.0, "act_clip_decay": 1e-4}, LearnedClippedLinearQuantization, 16),
    (WRPNQuantizer, {}, ClippedLinearQuantization, 15),
])
def test_training_decreases_loss_with_weights_on_the_grid(cls, kwargs, act_type, max_levels, relu_cnn,
                                                          learnable_batches, train_steps):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.3, momentum=0.9)
    quantizer = cls(relu_cnn, optimizer, bits_activations=8, bits_weights=4, overrides=OVERRIDES, **kwargs)
    quantizer.prepare_model()
    quantizer.quantize_params()
    losses = train_steps(relu_cnn, optimizer, quantizer, learnable_batches, 24)
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    assert isinstance(relu_cnn.relu1, act_type) and isinstance(relu_cnn.relu2, act_type)
    for conv in (relu_cnn.conv1, relu_cnn.conv2):
        assert conv.weight.unique().numel() <= max_levels
        assert conv.float_weight.unique().numel() > 100  # the float copy keeps training
    assert isinstance(relu_cnn.fc.weight, nn.Parameter) and relu_cnn.fc.weight.unique().numel() > 16


def test_pact_clip_values_get_gradients_and_their_own_group(relu_cnn, learnable_batches):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1, weight_decay=5e-4)
    quantizer = PACTQuantizer(relu_cnn, optimizer, bits_activations=2, bits_weights=4, act_clip_init_val=0.5,
                              act_clip_decay=1e-3)
    quantizer.prepare_model()
    clip_vals = [relu_cnn.relu1.clip_val, relu_cnn.relu2.clip_val]
    assert len(optimizer.param_groups) == 2
    base, clip_group = optimizer.param_groups
    assert clip_group["weight_decay"] == 1e-3 and base["weight_decay"] == 5e-4
    assert [id(p) for p in clip_group["params"]] == [id(p) for p in clip_vals]
    assert not any(p is c for p in base["params"] for c in clip_vals)
    x, y = learnable_batches[0]
    nn.functional.cross_entropy(relu_cnn(x), y).backward()
    assert all(c.grad is not None and c.grad.abs().item() > 0 for c in clip_vals)
    before = [c.item() for c in clip_vals]
    optimizer.step()
    assert all(c.item() != b for c, b in zip(clip_vals, before))


def test_pact_without_decay_uses_optimizer_default(relu_cnn):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1, weight_decay=5e-4)
    PACTQuantizer(relu_cnn, optimizer, bits_activations=4, bits_weights=4).prepare_model()
    assert optimizer.param_groups[1]["weight_decay"] == 5e-4 and len(optimizer.param_groups[1]["params"]) == 2


@pytest.mark.parametrize("cls, kwargs, expected", [
    (DorefaQuantizer, {"bits_bias": 8}, "expects None, got 8"),
    (PACTQuantizer, {"act_clip_init_val": 0}, "expects a number > 0, got 0"),
    (PACTQuantizer, {"act_clip_decay": -1}, "expects a number >= 0 or None, got -1"),
    (PACTQuantizer, {"act_clip_decay": "lots"}, "expects a number >= 0 or None, got 'lots'"),
    (WRPNQuantizer, {"bits_activations": 40}, "expects an integer in [1, 32] or None, got 40"),
])
def test_bad_arguments_name_class_argument_expected_type_and_value(cls, kwargs, expected, relu_cnn):
    (argument,) = kwargs
    with pytest.raises(ArgumentError) as caught:
        cls(relu_cnn, None, **kwargs)
    assert caught.value.argument == argument
    assert str(caught.value).startswith(f"{cls.__name__}: argument '{argument}' {expected}")


def test_yaml_exponent_strings_are_numbers(relu_cnn):
    quantizer = PACTQuantizer(relu_cnn, None, act_clip_init_val="6e0", act_clip_decay="2e-4")
    assert (quantizer.act_clip_init_val, quantizer.act_clip_decay) == (6.0, 2e-4)


@pytest.mark.parametrize("cls_name", ["DorefaQuantizer", "PACTQuantizer", "WRPNQuantizer"])
def test_built_from_a_schedule(cls_name, relu_cnn):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    schedule = {"quantizers": {"q": {"class": cls_name, "bits_activations": 8, "bits_weights": 4,
                                     "overrides": {"conv1": {"bits_weights": None},
                                                   "relu1": {"bits_activations": None}}}},
                "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 10,
                              "frequency": 1}]}
    scheduler = distiller.config.dict_config(relu_cnn, optimizer, schedule)
    assert isinstance(relu_cnn.relu1, nn.ReLU) and not isinstance(relu_cnn.relu2, nn.ReLU)
    assert "float_weight" in relu_cnn.conv2._parameters and "float_weight" not in relu_cnn.conv1._parameters
    assert relu_cnn.conv2.weight.unique().numel() <= 16  # quantized as soon as the policy is built
    record = scheduler.model_transforms[0]
    assert record["kind"] == "quantization" and record["quantizer"]["class"] == cls_name
