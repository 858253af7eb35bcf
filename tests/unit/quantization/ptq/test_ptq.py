"""PostTrainLinearQuantizer and its wrappers: accuracy, integer exactness, graph-aware preparation, errors."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import distiller
from distiller.errors import ArgumentError, UnmatchedNameError
from distiller.modules import Concat, EltwiseAdd
from distiller.quantization import (FP16Wrapper, LinearQuantMode, PostTrainLinearQuantizer,
                                    RangeLinearFakeQuantWrapper, RangeLinearQuantConcatWrapper,
                                    RangeLinearQuantEltwiseAddWrapper, RangeLinearQuantEltwiseMultWrapper,
                                    RangeLinearQuantParamLayerWrapper)
from distiller.quantization.range_linear.wrappers import saturation_range_from_stats


def _stats_of(tensor):
    return {"min": tensor.min().item(), "max": tensor.max().item(), "avg_min": tensor.min().item(),
            "avg_max": tensor.max().item(), "mean": tensor.mean().item(), "std": tensor.std().item(),
            "b": (tensor - tensor.mean()).abs().mean().item()}


# ------------------------------------------------------------------------------------------ wrappers
@pytest.mark.parametrize("mode", ["sym", "asym_u", "asym_s"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_param_wrapper_error_within_a_few_quantization_steps(mode, per_channel):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(8, 4, 6, 6)
    expected = conv(x).detach()
    stats = {"inputs": {0: _stats_of(x)}, "output": _stats_of(expected)}
    wrapper = RangeLinearQuantParamLayerWrapper(copy.deepcopy(conv), 8, 8, mode=mode, per_channel_wts=per_channel,
                                                activation_stats=stats).eval()
    output = wrapper(x)
    step = 1 / wrapper.output_scale.item()
    # input, weight and output rounding: a few output steps at most, far less than the output range
    assert (output - expected).abs().max().item() < 4 * step
    assert (output - expected).abs().max().item() < 0.05 * expected.abs().max().item()


def test_param_wrapper_simulation_equals_integer_arithmetic():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    stats = {"inputs": {0: _stats_of(x)}, "output": _stats_of(conv(x).detach())}
    wrapper = RangeLinearQuantParamLayerWrapper(conv, 8, 8, mode="asym_u", activation_stats=stats).eval()
    s_in, zp_in = wrapper.input_scales[0].double(), wrapper.input_zero_points[0].double()
    s_w, s_out, zp_out = wrapper.w_scale.double(), wrapper.output_scale.double(), wrapper.output_zero_point.double()
    # integer pipeline in int64: quantize input, integer conv, int32 bias, requantize, dequantize
    q_x = torch.clamp(torch.round(s_in * x.double() - zp_in), 0, 255).long() + zp_in.long()
    q_w = conv.weight.detach().long() + wrapper.w_zero_point.long()  # integer weights are stored in place
    acc = F.conv2d(q_x.double(), q_w.double(), padding=1).round().long()
    acc = acc + torch.round(conv.bias.detach().double() * s_in * s_w).long().view(1, -1, 1, 1)
    q_out = torch.clamp(torch.round(acc.double() * (s_out / (s_in * s_w)) - zp_out), 0, 255)
    expected = ((q_out + zp_out) / s_out).float()
    assert torch.equal(conv.weight, conv.weight.round())
    assert torch.allclose(wrapper(x), expected, atol=1e-6, rtol=0)


def test_eltwise_and_concat_wrappers_close_to_float():
    torch.manual_seed(2)
    a, b = torch.randn(4, 3, 5), torch.rand(4, 3, 5) * 3
    for module, wrapper_cls, expected in ((EltwiseAdd(), RangeLinearQuantEltwiseAddWrapper, a + b),
                                          (distiller.modules.EltwiseMult(), RangeLinearQuantEltwiseMultWrapper, a * b),
                                          (Concat(dim=1), RangeLinearQuantConcatWrapper, torch.cat([a, b], 1))):
        stats = {"inputs": {0: _stats_of(a), 1: _stats_of(b)}, "output": _stats_of(expected)}
        wrapper = wrapper_cls(module, 8, mode="asym_u", activation_stats=stats).eval()
        step = 1 / wrapper.output_scale.item()
        assert (wrapper(a, b) - expected).abs().max().item() <= 2.5 * step, wrapper_cls.__name__


def test_dynamic_ranges_follow_each_batch():
    torch.manual_seed(3)
    wrapper = RangeLinearQuantParamLayerWrapper(nn.Linear(6, 4), 8, 8).eval()
    for scale in (0.01, 100.0):  # no stored range could fit both batches
        x = torch.randn(16, 6) * scale
        expected = F.linear(x, wrapper.dequantized_weight(), wrapper.wrapped_module.bias)
        assert (wrapper(x) - expected).abs().max() < 0.03 * expected.abs().max()


@pytest.mark.parametrize("clip", ["AVG", "N_STD", "GAUSS", "LAPLACE"])
def test_clipped_ranges_are_inside_the_actual_range(clip):
    stats = {"min": -10.0, "max": 12.0, "avg_min": -4.0, "avg_max": 5.0, "mean": 0.5, "std": 1.0, "b": 0.8}
    lo, hi = saturation_range_from_stats(stats, clip, 8, clip_n_stds=3)
    assert -10.0 <= lo < 0 < hi <= 12.0
    assert (lo, hi) != (-10.0, 12.0)
    assert saturation_range_from_stats(stats, clip, 8, clip_n_stds=3, clip_half_range=True)[0] == -10.0


def test_training_a_post_training_quantized_model_is_a_clear_error(quantize, test_batch):
    _, model = quantize()
    model.train()
    with pytest.raises(RuntimeError, match="for inference.*QuantAwareTrainRangeLinearQuantizer"):
        model(test_batch)
    with torch.no_grad():
        model(test_batch)  # forward-only use in training mode is fine


def test_fp16_wrapper_rounds_to_half_precision():
    linear = nn.Linear(3, 2)
    x = torch.tensor([[1 + 2 ** -13, 0.1, -3.3]])
    out = FP16Wrapper(linear)(x)
    assert torch.equal(out, out.half().float())
    assert torch.equal(linear.weight, linear.weight.half().float())


# --------------------------------------------------------------------------------------- quantizer
def test_ptq_wraps_residual_add_and_concat_and_keeps_agreement(float_model, quantize, test_batch):
    quantizer, model = quantize(mode={"activations": "asym_u", "weights": "sym"})
    assert isinstance(model.block.add, RangeLinearQuantEltwiseAddWrapper)
    assert isinstance(model.cat, RangeLinearQuantConcatWrapper)
    assert isinstance(model.block.conv1, RangeLinearQuantParamLayerWrapper)
    assert isinstance(model.avgpool, RangeLinearFakeQuantWrapper)
    assert isinstance(model.block.bn1, nn.Identity) and isinstance(model.bn1, nn.Identity)  # folded
    with torch.no_grad():
        expected, output = float_model(test_batch), model(test_batch)
    agreement = (expected.argmax(1) == output.argmax(1)).float().mean().item()
    assert agreement >= 0.9
    assert (expected - output).abs().max() < 0.1 * expected.abs().max()


def test_relu_range_fused_and_inputs_reuse_producer_params(quantize):
    _, model = quantize(mode="asym_u")
    # conv1 -> bn1 (folded) -> relu: conv1's output range starts at 0, so its zero point is 0
    assert model.conv1.output_zero_point.item() == 0
    # block.conv1's input is conv1's output through ReLU and max-pooling: same parameters
    assert model.block.conv1.input_scales[0] == model.conv1.output_scale
    # the residual add takes block.conv2's output and the block input (max-pool output of conv1)
    assert model.block.add.input_scales[0] == model.block.conv2.output_scale
    assert model.block.add.input_scales[1] == model.conv1.output_scale
    # average pooling keeps its input's parameters (as integer kernels do)
    assert model.avgpool.output_scale == model.cat.output_scale


def test_no_auto_fallback_shares_producers_and_needs_settings_for_other_inputs(quantize):
    """Distiller's inputs_quant_auto_fallback=False: inputs from quantized layers still take their parameters; an
    input without a quantized producer (the model's input) needs input_overrides instead of its own range."""
    with pytest.raises(ArgumentError, match=r"inputs_quant_auto_fallback is false, but input 0 of 'conv1' comes from "
                                            r"no quantized layer \(the model's input") as caught:
        quantize(mode="asym_u", clip_acts="N_STD", clip_n_stds=2, inputs_quant_auto_fallback=False)
    assert caught.value.argument == "inputs_quant_auto_fallback"
    quantizer, model = quantize(mode="asym_u", clip_acts="N_STD", clip_n_stds=2, inputs_quant_auto_fallback=False,
                                overrides={"conv1": {"input_overrides": {0: {"from_output": True}}}})
    # with N_STD clipping the max-pool output (block.conv1's input) would get another range of its own
    assert model.block.conv1.input_scales[0] == model.conv1.output_scale
    assert quantizer.shared_inputs[("block.conv1", 0)] == "conv1"


def test_overrides_set_per_layer_bits_and_exclusions(quantize):
    _, model = quantize(overrides={"block.conv1": {"bits_weights": 4, "mode": "asym_u"},
                                   "fc": {"bits_activations": None, "bits_weights": None}})
    assert model.block.conv1.num_bits_params == 4
    assert model.block.conv1.mode.activations == LinearQuantMode.ASYMMETRIC_UNSIGNED
    assert isinstance(model.fc, nn.Linear)
    assert model.conv1.num_bits_params == 8


def test_stats_yaml_file_and_dynamic_mode(float_model, stats, tmp_path, test_batch):
    from distiller.data_loggers import save_quant_stats
    path = save_quant_stats(stats, str(tmp_path / "stats.yaml"))
    from_file = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=path)
    from_file.prepare_model()
    from_dict = PostTrainLinearQuantizer(copy.deepcopy(float_model), model_activation_stats=stats)
    from_dict.prepare_model()
    with torch.no_grad():
        assert torch.equal(from_file.model(test_batch), from_dict.model(test_batch))
    dynamic = PostTrainLinearQuantizer(copy.deepcopy(float_model))
    dynamic.prepare_model()
    assert not dynamic.model.conv1.preset_act_stats
    with torch.no_grad():
        assert (dynamic.model(test_batch) - float_model(test_batch)).abs().max() < 0.2


def test_quantized_checkpoint_round_trip(float_model, quantize, test_batch, tmp_path):
    quantizer, model = quantize(mode="asym_u", per_channel_wts=True)
    scheduler = distiller.CompressionScheduler(model)
    scheduler.record_transform("quantization", {"quantizer": quantizer.state_dict()})
    path = distiller.apputils.save_checkpoint(0, "tiny", model, scheduler=scheduler, name="quantized",
                                              dir=str(tmp_path))
    assert path.endswith("quantized_checkpoint.pth.tar")
    torch.load(path, weights_only=True)  # plain data only
    fresh = type(float_model)().eval()
    distiller.apputils.load_checkpoint(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(test_batch), model(test_batch))


# ------------------------------------------------------------------------------------------ errors
def test_bad_bit_widths_mode_and_clip_strings_are_named(float_model):
    for kwargs, words in (({"bits_activations": 0}, "bits_activations"), ({"bits_parameters": 33}, "bits_parameters"),
                          ({"bits_accum": 0}, "bits_accum"), ({"mode": "symmetrical"}, "symmetrical"),
                          ({"clip_acts": "median"}, "median"), ({"clip_acts": "N_STD"}, "clip_n_stds"),
                          ({"overrides": {"fc": {"mode": "bogus"}}}, "overrides['fc']"),
                          ({"overrides": {"fc": {"bits_accum": 33}}}, "bits_accum"),
                          ({"overrides": {"fc": {"colour": 1}}}, "colour")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            PostTrainLinearQuantizer(copy.deepcopy(float_model), **kwargs)


def test_override_matching_nothing_is_an_error(float_model):
    with pytest.raises(UnmatchedNameError, match="blok"):
        PostTrainLinearQuantizer(copy.deepcopy(float_model), overrides={"blok.conv1": {"bits_weights": 4}})


def test_stats_of_another_model_are_rejected_before_any_change(float_model, stats):
    wrong = dict(stats)
    wrong["features.0"] = wrong.pop("conv1")
    model = copy.deepcopy(float_model)
    with pytest.raises(ValueError, match="features.0"):
        PostTrainLinearQuantizer(model, model_activation_stats=wrong)
    missing = {k: v for k, v in stats.items() if k != "fc"}
    quantizer = PostTrainLinearQuantizer(model, model_activation_stats=missing)
    with pytest.raises(ValueError, match="'fc'"):
        quantizer.prepare_model()
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.bn1, nn.BatchNorm2d)  # nothing half-applied


def test_model_zoo_resnet_residual_adds_are_quantized():
    from distiller.models import create_model
    torch.manual_seed(0)
    model = create_model(False, "cifar10", "resnet20_cifar", parallel=False).eval()
    batches = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    from distiller.data_loggers import collect_quant_stats
    stats = collect_quant_stats(model, lambda m: [m(x) for x in batches])
    quantized = copy.deepcopy(model)
    PostTrainLinearQuantizer(quantized, model_activation_stats=stats, mode="asym_u").prepare_model()
    adds = [n for n, m in quantized.named_modules() if isinstance(m, RangeLinearQuantEltwiseAddWrapper)]
    assert len(adds) == 9  # one per residual block
    with torch.no_grad():
        assert (quantized(batches[0]) - model(batches[0])).abs().max() < 0.1 * model(batches[0]).abs().max()


def test_relu6_range_is_fused_into_the_layer_before_it(relu6_model):
    """ReLU6 fuses like ReLU (Jacob et al. 2018): the layer before it quantizes the ReLU6's output range
    (module: its statistics; functional: the layer's range clipped to [0, 6]), so the ReLU6 changes no value."""
    model, stats = relu6_model("asym_u")
    relu6_max = stats["relu6"]["output"]["max"]
    assert model.conv1.output_zero_point.item() == 0  # the range starts at 0, not at the conv's negative minimum
    assert model.conv1.output_scale.item() == pytest.approx(255 / relu6_max)
    assert stats["conv2"]["output"]["max"] > 6
    assert model.conv2.output_scale.item() == pytest.approx(255 / 6)  # the functional ReLU6's range [0, 6]
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        conv1_out = model.conv1(x)
        torch.testing.assert_close(model.relu6(conv1_out), conv1_out, rtol=0, atol=0)  # on the grid already
