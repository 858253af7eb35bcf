"""Simulated BatchNorm folding: equivalence with conv + BN, statistics freezing, QAT integration."""
import copy

import pytest
import torch
from torch import nn

from distiller.quantization import QuantAwareTrainRangeLinearQuantizer, SimulatedFoldedBatchNorm
from distiller.quantization.bn_fold import find_batchnorm_pairs
from distiller.testing import TinyCNN


def _conv_bn(bias):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return conv, bn


@pytest.mark.parametrize("bias", [False, True])
def test_without_quantization_it_computes_conv_then_bn(bias):
    conv, bn = _conv_bn(bias)
    reference_conv, reference_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    folded = SimulatedFoldedBatchNorm(conv, bn, freeze_bn_delay=10)
    x = torch.randn(8, 3, 5, 5)
    # training: batch statistics, running statistics updated as BatchNorm does
    assert torch.allclose(folded(x), reference_bn(reference_conv(x)), atol=1e-5)
    assert torch.allclose(bn.running_mean, reference_bn.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, reference_bn.running_var, atol=1e-6)
    assert bn.num_batches_tracked.item() == 1
    folded.eval(), reference_bn.eval()
    assert torch.allclose(folded(x), reference_bn(reference_conv(x)), atol=1e-5)


def test_gradients_match_conv_then_bn():
    conv, bn = _conv_bn(False)
    conv, bn = conv.double(), bn.double()  # compare the math, not float32 rounding
    reference_conv, reference_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    projection = torch.randn(8, 6, 5, 5, dtype=torch.float64)
    (SimulatedFoldedBatchNorm(conv, bn)(x) * projection).sum().backward()
    (reference_bn(reference_conv(x)) * projection).sum().backward()
    assert torch.allclose(conv.weight.grad, reference_conv.weight.grad, atol=1e-10)
    assert torch.allclose(bn.weight.grad, reference_bn.weight.grad, atol=1e-10)
    assert torch.allclose(bn.bias.grad, reference_bn.bias.grad, atol=1e-10)


def test_statistics_freeze_after_delay():
    conv, bn = _conv_bn(True)
    folded = SimulatedFoldedBatchNorm(conv, bn, freeze_bn_delay=2)
    for _ in range(2):
        folded(torch.randn(8, 3, 5, 5))
    frozen_mean = bn.running_mean.clone()
    assert folded.frozen
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    out = folded(x)
    assert torch.equal(bn.running_mean, frozen_mean) and bn.num_batches_tracked.item() == 2
    bn.eval()
    assert torch.allclose(out, bn(conv(x)), atol=1e-5)  # frozen training == inference computation


def test_linear_with_batchnorm1d_and_weight_quantization():
    torch.manual_seed(0)
    linear, bn = nn.Linear(5, 4), nn.BatchNorm1d(4)
    calls = []

    def quantize(weight):
        calls.append(weight.detach().clone())
        return torch.round(weight * 4) / 4

    folded = SimulatedFoldedBatchNorm(linear, bn, freeze_bn_delay=0, param_quantization_fn=quantize).eval()
    x = torch.randn(6, 5)
    out = folded(x)
    sigma = torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(calls[0], linear.weight * (bn.weight / sigma).view(-1, 1))  # the *folded* weight
    expected = x @ quantize(calls[0]).t() + bn.bias + (linear.bias - bn.running_mean) * bn.weight / sigma
    assert torch.allclose(out, expected, atol=1e-6)


def test_unfoldable_pairs_are_rejected():
    with pytest.raises(TypeError, match="cannot fold BatchNorm1d into Conv2d"):
        SimulatedFoldedBatchNorm(nn.Conv2d(1, 2, 1), nn.BatchNorm1d(2))
    with pytest.raises(TypeError, match="track_running_stats=False"):
        SimulatedFoldedBatchNorm(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))


def test_pairs_are_found_by_tracing_and_untraceable_models_are_explained():
    assert find_batchnorm_pairs(TinyCNN()) == [("conv1", "bn1"), ("conv2", "bn2")]

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="torch.fx can trace; tracing Branchy failed"):
        find_batchnorm_pairs(Branchy())


def test_qat_with_folding(relu_cnn, learnable_batches, train_steps):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.3, momentum=0.9)
    quantizer = QuantAwareTrainRangeLinearQuantizer(relu_cnn, optimizer, bits_activations=8, bits_weights=4,
                                                    mode="asym_u", fold_bn=True, freeze_bn_delay=100,
                                                    overrides={"conv1": {"bits_weights": None}})
    quantizer.prepare_model()
    assert isinstance(relu_cnn.conv2, SimulatedFoldedBatchNorm) and isinstance(relu_cnn.bn2, nn.Identity)
    assert relu_cnn.conv1.param_quantization_fn is None and relu_cnn.conv2.param_quantization_fn is not None
    assert [p.module_name for p in quantizer.params_to_quantize] == ["fc", "fc"]  # folded layers quantize themselves
    losses = train_steps(relu_cnn, optimizer, quantizer, learnable_batches, 24)
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    assert not relu_cnn.conv2.frozen and relu_cnn.conv2.bn.num_batches_tracked.item() == 24
    sigma = torch.sqrt(relu_cnn.conv2.bn.running_var + relu_cnn.conv2.bn.eps)
    folded = relu_cnn.conv2._folded_weight(relu_cnn.conv2.bn.weight, sigma)
    assert folded.unique().numel() <= 16
