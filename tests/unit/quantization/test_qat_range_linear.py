"""Range-linear quantization-aware training: EMA activation ranges, weight grids, modes, inputs."""
import pytest
import torch
from torch import nn

import distiller
from distiller.quantization import FakeLinearQuantization, FakeQuantizationWrapper, QuantAwareTrainRangeLinearQuantizer
from distiller.quantization.q_utils import LinearQuantMode


def test_ema_range_is_bias_corrected_and_used_in_eval():
    fake_q = FakeLinearQuantization(8, "asym_u", ema_decay=0.9)
    fake_q(torch.tensor([-1.0, 3.0]))
    # one step: the bias-corrected average equals the observed range exactly
    assert fake_q.tracked_min.item() == pytest.approx(-1.0) and fake_q.tracked_max.item() == pytest.approx(3.0)
    fake_q(torch.tensor([-3.0, 1.0]))
    # biased: 0.9 * 0.1 * -1 + 0.1 * -3 = -0.39; correction 1 - 0.81 = 0.19
    assert fake_q.tracked_min.item() == pytest.approx(-0.39 / 0.19)
    assert fake_q.tracked_max.item() == pytest.approx((0.09 * 3 + 0.1 * 1) / 0.19)
    assert fake_q.scale.item() == pytest.approx(255 / (fake_q.tracked_max - fake_q.tracked_min).item())
    fake_q.eval()
    out = fake_q(torch.linspace(-5, 5, 1000))
    assert out.min().item() == pytest.approx(fake_q.tracked_min.item(), abs=0.02)  # saturates at the range
    assert out.max().item() == pytest.approx(fake_q.tracked_max.item(), abs=0.02)
    assert out.unique().numel() <= 256 and fake_q.iter_count.item() == 2  # eval does not update


def test_untrained_fake_quant_uses_the_batch_range_in_eval():
    fake_q = FakeLinearQuantization(4, "sym").eval()
    x = torch.linspace(-2, 2, 100)
    out = fake_q(x)
    assert out.unique().numel() <= 16 and (out - x).abs().max() <= 0.5 * 2 / 7.5 + 1e-6


def test_fake_quant_gradient_is_straight_through_inside_the_range():
    fake_q = FakeLinearQuantization(8, "asym_u")
    fake_q(torch.tensor([0.0, 1.0]))
    fake_q.eval()
    x = torch.tensor([-0.5, 0.3, 0.7, 1.5], requires_grad=True)
    fake_q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("mode", ["sym", "asym_u", LinearQuantMode.ASYMMETRIC_SIGNED, "SYMMETRIC_RESTRICTED"])
def test_training_decreases_loss_and_weights_are_quantized(mode, relu_cnn, learnable_batches, train_steps):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.3, momentum=0.9)
    quantizer = QuantAwareTrainRangeLinearQuantizer(relu_cnn, optimizer, bits_activations=8, bits_weights=4,
                                                    mode=mode, overrides={"fc": {"bits_weights": None}})
    quantizer.prepare_model()
    losses = train_steps(relu_cnn, optimizer, quantizer, learnable_batches, 24)
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    for conv in (relu_cnn.conv1, relu_cnn.conv2):
        assert conv.weight.unique().numel() <= 16
        assert conv.weight_scale.numel() == 1
    assert isinstance(relu_cnn.relu1, FakeQuantizationWrapper) and relu_cnn.relu1.fake_q.iter_count.item() == 24
    assert relu_cnn.inputs_quant.iter_count.item() == 24
    assert relu_cnn.conv2.float_bias.unique().numel() == relu_cnn.conv2.bias.unique().numel()  # 32-bit bias


def test_per_channel_weights(relu_cnn, learnable_batches, train_steps):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    quantizer = QuantAwareTrainRangeLinearQuantizer(relu_cnn, optimizer, bits_activations=8, bits_weights=3,
                                                    mode="asym_u", per_channel_wts=True, quantize_inputs=False)
    quantizer.prepare_model()
    train_steps(relu_cnn, optimizer, quantizer, learnable_batches, 2)
    weight = relu_cnn.conv2.weight
    assert relu_cnn.conv2.weight_scale.shape == (16, 1, 1, 1)
    assert all(row.unique().numel() <= 8 for row in weight)
    assert weight.unique().numel() > 8  # different grids per channel
    assert not hasattr(relu_cnn, "inputs_quant")
    expected = torch.round(relu_cnn.conv2.float_weight * relu_cnn.conv2.weight_scale - relu_cnn.conv2.weight_zero_point)
    assert torch.allclose(weight, (expected + relu_cnn.conv2.weight_zero_point) / relu_cnn.conv2.weight_scale)


def test_null_overrides_keep_layers_float(relu_cnn):
    quantizer = QuantAwareTrainRangeLinearQuantizer(
        relu_cnn, bits_activations=8, bits_weights=8,
        overrides={"conv1": {"bits_weights": None, "bits_bias": None}, "relu1": {"bits_activations": None}})
    quantizer.prepare_model()
    assert isinstance(relu_cnn.relu1, nn.ReLU) and isinstance(relu_cnn.conv1.weight, nn.Parameter)
    assert [p.module_name for p in quantizer.params_to_quantize] == ["conv2", "conv2", "fc", "fc"]


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "asym"}, "unknown quantization mode 'asym'"),
    ({"ema_decay": 1.0}, r"argument 'ema_decay' expects a number in \(0, 1\), got 1.0"),
    ({"num_bits_inputs": 0}, r"argument 'num_bits_inputs' expects an integer in \[1, 32\] or None, got 0"),
    ({"freeze_bn_delay": -5}, "argument 'freeze_bn_delay' expects an integer >= 0, got -5"),
    ({"per_channel_wts": "yes"}, "argument 'per_channel_wts' expects true or false, got 'yes'"),
])
def test_bad_arguments(kwargs, message, relu_cnn):
    with pytest.raises(distiller.errors.ArgumentError, match=message) as caught:
        QuantAwareTrainRangeLinearQuantizer(relu_cnn, **kwargs)
    assert caught.value.argument == next(iter(kwargs))


def test_yaml_schedule_and_state_record(relu_cnn):
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    schedule = {"quantizers": {"linear": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8,
                                          "bits_weights": 4, "mode": {"activations": "asym_u", "weights": "sym"},
                                          "per_channel_wts": True}},
                "policies": [{"quantizer": {"instance_name": "linear"}, "starting_epoch": 0, "ending_epoch": 5,
                              "frequency": 1}]}
    scheduler = distiller.config.dict_config(relu_cnn, optimizer, schedule)
    assert relu_cnn.relu2.fake_q.mode is LinearQuantMode.ASYMMETRIC_UNSIGNED
    assert relu_cnn.conv1.weight_zero_point.abs().sum() == 0  # symmetric weights
    args = scheduler.model_transforms[0]["quantizer"]["args"]
    assert args["mode"] == {"activations": "asym_u", "weights": "sym"} and args["per_channel_wts"] is True
    with pytest.raises(distiller.errors.ScheduleError, match="no argument 'bits_weight'"):
        distiller.config.dict_config(relu_cnn, optimizer, {
            "quantizers": {"linear": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_weight": 4}},
            "policies": [{"quantizer": {"instance_name": "linear"}, "starting_epoch": 0, "ending_epoch": 5}]})


@pytest.mark.cuda
@pytest.mark.parametrize("cls_name", ["QuantAwareTrainRangeLinearQuantizer", "DorefaQuantizer", "PACTQuantizer",
                                      "WRPNQuantizer"])
def test_qat_on_cuda_follows_the_model_device(cls_name, relu_cnn, learnable_batches, train_steps):
    model = relu_cnn.cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    quantizer = distiller.registry.QUANTIZERS.get(cls_name)(model, optimizer, bits_activations=8, bits_weights=4,
                                                            overrides={"fc": {"bits_weights": None}})
    quantizer.prepare_model()
    losses = train_steps(model, optimizer, quantizer, [(x.cuda(), y.cuda()) for x, y in learnable_batches], 4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert model.conv2.weight.is_cuda and model.conv2.weight.unique().numel() <= 16


@pytest.mark.parametrize("per_channel", [False, True])
def test_symmetric_weights_stay_in_the_integer_range_and_all_train(relu_cnn, per_channel):
    """A symmetric range spans 127.5 steps each side: the largest positive weight used to round to +128 (one past
    int8, which integer deployment cannot store); it is clamped to 127, and its gradient still flows."""
    with torch.no_grad():
        relu_cnn.conv1.weight.abs_()  # every channel's largest magnitude is positive
    optimizer = torch.optim.SGD(relu_cnn.parameters(), lr=0.1)
    QuantAwareTrainRangeLinearQuantizer(relu_cnn, optimizer, bits_activations=8, bits_weights=8, mode="sym",
                                        per_channel_wts=per_channel).prepare_model()
    relu_cnn(torch.randn(32, 3, 8, 8)).sum().backward()  # the forward quantizes the weights
    integers = torch.round(relu_cnn.conv1.weight * relu_cnn.conv1.weight_scale)
    assert integers.max().item() == 127 and integers.min().item() >= -128
    grad = relu_cnn.conv1.float_weight.grad
    largest = relu_cnn.conv1.float_weight.detach().flatten(1).argmax(1) if per_channel else None
    assert grad.abs().sum().item() > 0
    if per_channel:  # each channel's largest weight, the one clamped, still gets its gradient
        assert (grad.flatten(1).gather(1, largest[:, None]) != 0).all()
