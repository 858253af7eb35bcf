"""Thinning quantized models: quantization-aware training (float copies, per-channel weight ranges, activation
ranges) and post-training wrappers are thinned with their layers, so the thinned quantized model computes what
the unthinned one did, and a quantization-aware-trained one keeps training."""
import logging

import pytest
import torch
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.graph import unwrap
from distiller.masking import trained_parameter
from distiller.modules import EltwiseAdd
from distiller.quantization import (DorefaQuantizer, PostTrainLinearQuantizer, QuantAwareTrainRangeLinearQuantizer,
                                    RangeLinearFakeQuantWrapper, RangeLinearQuantEltwiseAddWrapper,
                                    RangeLinearQuantParamLayerWrapper, WRPNQuantizer)
from distiller.quantization.q_utils import linear_quant_params_from_tensor
from distiller.testing import TinyCNN
from distiller.thinning import ThinningError, apply_thinning_recipe, contract_model, remove_channels, remove_filters

X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _zero_channels(model, channels, producers, norms, readers):
    """Zeroes ``channels`` everywhere they live: the producers' filters (their float copies under quantization-aware
    training), the norms' weights and biases and the readers' input columns."""
    with torch.no_grad():
        for name in producers:
            trained_parameter(model.get_submodule(name), "weight")[channels] = 0
        for name in norms:
            model.get_submodule(name).weight[channels] = 0
            model.get_submodule(name).bias[channels] = 0
        for name in readers:
            trained_parameter(model.get_submodule(name), "weight")[:, channels] = 0


def _zero_tiny_cnn(model):
    _zero_channels(model, [1, 3], ["conv1"], ["bn1"], ["conv2"])
    _zero_channels(model, [0, 5], ["conv2"], ["bn2"], ["fc"])


def _qat(model, per_channel, bits_activations=8):
    """Prepares ``model`` for quantization-aware training (4-bit weights, 8-bit activations and input) and trains
    one step, so the activation ranges and the optimizer's momentum are set."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    QuantAwareTrainRangeLinearQuantizer(model, optimizer, bits_activations=bits_activations, bits_weights=4,
                                        num_bits_inputs=8, mode="ASYMMETRIC_UNSIGNED",
                                        per_channel_wts=per_channel).prepare_model(X[:1])
    model.train()
    optimizer.zero_grad()
    model(X).square().mean().backward()
    optimizer.step()
    return optimizer


def _outputs(model):
    model.eval()
    with torch.no_grad():
        return model(X)


def _assert_same_outputs(model, expected):
    """The float layers after the last quantization (global pooling, the classifier) sum fewer zero terms after
    thinning: equal up to float rounding, far below one quantization step."""
    torch.testing.assert_close(_outputs(model), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("thin", [remove_filters, remove_channels, contract_model], ids=lambda f: f.__name__)
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_qat_model_loses_its_zero_channels_with_identical_outputs_and_keeps_training(per_channel, thin):
    model = TinyCNN()
    optimizer = _qat(model, per_channel)
    _zero_tiny_cnn(model)
    expected = _outputs(model)
    thin(model, None, optimizer=optimizer, dummy_input=X[:1])

    assert model.conv1.float_weight.shape == model.conv1.weight.shape == (6, 3, 3, 3)
    assert model.conv1.weight_scale.numel() == model.conv1.weight_zero_point.numel() == (6 if per_channel else 1)
    assert model.bn1.num_features == 6 and model.conv2.float_weight.shape == (14, 6, 3, 3)
    assert model.fc.float_weight.shape == model.fc.weight.shape == (10, 14)
    assert optimizer.state[model.conv2.float_weight]["momentum_buffer"].shape == (14, 6, 3, 3)
    _assert_same_outputs(model, expected)

    model.train()
    before = model.conv2.float_weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(X).square().mean()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(model.conv2.float_weight, before)
    assert model.conv2.weight.unique().numel() <= (16 * 14 if per_channel else 16)


class ResidualNet(nn.Module):
    """A stem and one residual block written with modules (ReLUs, ``EltwiseAdd``), as quantizers see them."""

    def __init__(self, width=8):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        self.block_conv1, self.block_bn1 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.block_relu = nn.ReLU()
        self.block_conv2, self.block_bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.add, self.relu2 = EltwiseAdd(), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(width, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        out = self.block_bn2(self.block_conv2(self.block_relu(self.block_bn1(self.block_conv1(x)))))
        return self.fc(torch.flatten(self.pool(self.relu2(self.add(out, x))), 1))


def _post_train(model):
    stats = collect_quant_stats(model, lambda m: [m(X)])
    PostTrainLinearQuantizer(model, model_activation_stats=stats, per_channel_wts=True).prepare_model(X[:1])
    assert isinstance(model.add, RangeLinearQuantEltwiseAddWrapper)


@pytest.mark.parametrize("quantize", [lambda m: _qat(m, per_channel=True), _post_train], ids=["qat", "post_train"])
def test_residual_stream_loses_its_zero_channels_in_every_coupled_layer(quantize):
    torch.manual_seed(0)
    model = ResidualNet().eval()
    _zero_channels(model, [2, 5], ["conv1", "block_conv2"], ["bn1", "block_bn2"], ["block_conv1", "fc"])
    with torch.no_grad():
        model.conv1.bias[[2, 5]] = model.block_conv2.bias[[2, 5]] = 0
    quantize(model)
    expected = _outputs(model)
    recipe = remove_filters(model, None, dummy_input=X[:1])
    assert {"conv1", "block_conv1", "block_conv2", "fc"} <= set(recipe.modules)
    assert recipe.modules["conv1"] == recipe.modules["block_conv2"] == {"out_channels": [0, 1, 3, 4, 6, 7]}
    assert unwrap(model.fc)[0].in_features == unwrap(model.block_conv1)[0].in_channels == 6
    _assert_same_outputs(model, expected)


def test_qat_weight_ranges_follow_the_kept_weights_and_the_change_is_logged(caplog):
    model = TinyCNN()
    optimizer = _qat(model, per_channel=False)
    _zero_channels(model, [1, 3], ["conv1"], ["bn1"], [])
    with torch.no_grad():
        model.conv2.float_weight[0, 1] = 10.0  # the extreme of conv2's range sits in a column thinning removes
    with caplog.at_level(logging.INFO, logger="distiller.thinning"):
        remove_filters(model, None, optimizer=optimizer, dummy_input=X[:1])
    assert "'conv2.weight': the removed weights held an extreme of its per-tensor quantization range" in caplog.text
    _outputs(model)
    kept = model.conv2.float_weight.detach()
    scale, zero_point = linear_quant_params_from_tensor(kept, 4, "ASYMMETRIC_UNSIGNED")
    assert float(kept.amax()) < 10.0 and torch.equal(model.conv2.weight_scale, scale)
    assert torch.equal(model.conv2.weight_zero_point, zero_point)


@pytest.mark.parametrize("per_channel, mode", [(True, "ASYMMETRIC_UNSIGNED"), (False, "ASYMMETRIC_UNSIGNED"),
                                               (True, "SYMMETRIC")], ids=["per_channel", "per_tensor", "symmetric"])
def test_post_training_quantized_model_loses_its_zero_filters_with_identical_outputs(per_channel, mode):
    model = TinyCNN().eval()
    _zero_tiny_cnn(model)
    stats = collect_quant_stats(model, lambda m: [m(X)])
    PostTrainLinearQuantizer(model, model_activation_stats=stats, per_channel_wts=per_channel, mode=mode,
                             save_fp_weights=True).prepare_model(X[:1])
    assert isinstance(model.conv2, RangeLinearQuantParamLayerWrapper)
    expected = _outputs(model)
    recipe = remove_filters(model, None, dummy_input=X[:1])
    assert recipe.modules["conv1"] == {"out_channels": [0, 2, 4, 5, 6, 7]}  # the float layers' names
    assert model.conv2.wrapped_module.weight.shape == model.conv2.wrapped_module.float_weight.shape == (14, 6, 3, 3)
    assert model.conv2.w_scale.numel() == model.conv2.w_zero_point.numel() == (14 if per_channel else 1)
    assert model.fc.wrapped_module.in_features == 14
    _assert_same_outputs(model, expected)
    with pytest.raises(ThinningError, match="cannot thin 'num_features' of 'conv1' \\(Conv2d\\)"):
        apply_thinning_recipe(model, {"kind": "thinning", "modules": {"conv1": {"num_features": [0]}}})


def test_post_training_fake_quantized_layer_is_thinned_as_its_layer():
    model = TinyCNN().eval()
    _zero_tiny_cnn(model)
    stats = collect_quant_stats(model, lambda m: [m(X)])
    PostTrainLinearQuantizer(model, model_activation_stats=stats, per_channel_wts=True,
                             overrides={"conv2": {"fake": True}}).prepare_model(X[:1])
    assert isinstance(model.conv2, RangeLinearFakeQuantWrapper)
    expected = _outputs(model)
    remove_filters(model, None, dummy_input=X[:1])
    assert model.conv2.wrapped_module.weight.shape == (14, 6, 3, 3) and model.fc.w_scale.shape == (10, 1)
    _assert_same_outputs(model, expected)


def test_wrpn_model_loses_its_zero_filters_with_identical_outputs():
    model = TinyCNN()
    WRPNQuantizer(model, None, bits_activations=4, bits_weights=4).prepare_model()
    _zero_tiny_cnn(model)
    expected = _outputs(model)
    remove_filters(model, None, dummy_input=X[:1])
    assert model.conv1.float_weight.shape == (6, 3, 3, 3) and model.fc.weight.shape == (10, 14)
    _assert_same_outputs(model, expected)


def test_thinning_a_model_whose_quantizer_has_no_zero_level_is_refused():
    model = TinyCNN()
    DorefaQuantizer(model, None, bits_activations=8, bits_weights=4).prepare_model()
    _zero_tiny_cnn(model)
    with pytest.raises(ThinningError, match="prepared by DorefaQuantizer, whose weight levels do not include 0"):
        remove_filters(model, None, dummy_input=X[:1])
    assert model.conv1.float_weight.shape == (8, 3, 3, 3)
