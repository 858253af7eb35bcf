"""RangeLinearQuantParamLayerWrapper with Distiller's full argument list: input_overrides,
inputs_quant_auto_fallback, save_fp_weights, also_clip_weights."""
import copy

import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.quantization import ClipMode, LinearQuantMode, RangeLinearQuantParamLayerWrapper
from distiller.quantization.q_utils import linear_quant_params_from_min_max


def stats_of(tensor):
    return {"min": tensor.min().item(), "max": tensor.max().item(), "avg_min": tensor.min().item(),
            "avg_max": tensor.max().item(), "mean": tensor.mean().item(), "std": tensor.std().item(),
            "b": (tensor - tensor.mean()).abs().mean().item()}


@pytest.fixture
def layer_and_data():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    x = torch.randn(32, 6)
    return layer, x, {"inputs": {0: stats_of(x)}, "output": stats_of(layer(x).detach())}


def test_distillers_positional_arguments(layer_and_data):
    layer, x, stats = layer_and_data
    wrapper = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, 32, LinearQuantMode.SYMMETRIC,
                                                ClipMode.NONE, False, stats, None, False, None,
                                                {0: {"bits_activations": 4}}, True, True, False).eval()
    assert wrapper.input_settings[0].num_bits == 4 and wrapper.save_fp_weights and not wrapper.also_clip_weights
    assert hasattr(wrapper.wrapped_module, "float_weight")


def test_an_input_override_quantizes_that_input_with_its_own_bits(layer_and_data):
    layer, x, stats = layer_and_data
    eight = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, activation_stats=stats).eval()
    four = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, activation_stats=stats,
                                             input_overrides={0: {"bits_activations": 4}}).eval()
    lo, hi = stats["inputs"][0]["min"], stats["inputs"][0]["max"]
    scale4, _ = linear_quant_params_from_min_max(4, "SYMMETRIC", torch.tensor(lo), torch.tensor(hi))
    assert four.input_scales[0].item() == pytest.approx(scale4.item())
    q, _, _ = four.quantize_input(0, x)
    assert q.min() >= -8 and q.max() <= 7 and len(q.unique()) <= 16
    assert four.output_scale == eight.output_scale            # the output keeps 8 bits
    with torch.no_grad():
        expected = layer(x)
        error4, error8 = (four(x) - expected).abs().mean(), (eight(x) - expected).abs().mean()
    assert error8 < error4 < 0.2 * expected.abs().mean()      # coarser input, still a close result


def test_from_output_and_dynamic_overrides(layer_and_data):
    layer, x, _ = layer_and_data
    wrapper = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, clip_half_range=True,
                                                input_overrides={0: {"from_output": True}}).eval()
    assert wrapper.input_settings[0].num_bits == 8 and not wrapper.input_settings[0].clip_half_range
    clipped = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, input_overrides={
        0: {"clip_acts": "N_STD", "clip_n_stds": 0.5}}).eval()
    _, full_scale, _ = wrapper.quantize_input(0, x)
    _, clipped_scale, _ = clipped.quantize_input(0, x)
    assert clipped_scale > 2 * full_scale                      # a much narrower range: finer steps


def test_without_fallback_inputs_take_their_producers_parameters(layer_and_data):
    layer, x, stats = layer_and_data
    wrapper = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, activation_stats=stats,
                                                inputs_quant_auto_fallback=False).eval()
    assert wrapper.missing_static_params() == ["input 0"]      # its own statistics are not used
    wrapper.set_input_quant_params(0, 20.0, 0.0)
    assert wrapper.missing_static_params() == []
    with pytest.raises(ArgumentError, match=r"input\(s\) \[0\] get no producer's parameters"):
        RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, inputs_quant_auto_fallback=False)
    dynamic = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, inputs_quant_auto_fallback=False,
                                                input_overrides={0: {"bits_activations": 6}}).eval()
    assert dynamic(x).shape == (32, 4)


def test_also_clip_weights_clips_with_the_activation_clip_mode(layer_and_data):
    layer, _, _ = layer_and_data
    with torch.no_grad():
        layer.weight[0, 0] = 10.0                              # one outlier weight
    plain = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, clip_acts="N_STD", clip_n_stds=2)
    clipped = RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, clip_acts="N_STD", clip_n_stds=2,
                                                also_clip_weights=True)
    assert clipped.w_scale > 2 * plain.w_scale
    assert clipped.dequantized_weight()[0, 0] < 5.0            # the outlier is clipped to mean + 2 std
    with pytest.raises(ArgumentError, match="cannot clip weights with clip_acts AVG"):
        RangeLinearQuantParamLayerWrapper(copy.deepcopy(layer), 8, 8, clip_acts="AVG", also_clip_weights=True)


@pytest.mark.parametrize("overrides, message, location", [
    ({0: {"bits": 4}}, r"argument 'input_overrides\[0\]' has unknown setting 'bits'", (0, "bits")),
    ({0: {"from_output": True, "bits_activations": 4}}, "'from_output' takes the output's settings and no other",
     (0,)),
    ({0: {"bits_activations": 40}}, r"argument 'input_overrides\[0\]\['bits_activations'\]' expects an integer "
                                    r"in \[2, 32\], got 40", (0, "bits_activations")),
    ({0: {"clip_acts": "N_STD"}}, "clip_acts N_STD needs clip_n_stds", (0, "clip_acts")),
    ({-1: {"bits_activations": 4}}, "its keys are input indices", (-1,)),
    ({0: 4}, r"argument 'input_overrides\[0\]' expects a mapping of settings", (0,)),
    ({1: {"bits_activations": 4}}, r"input_overrides\[1\]: the layer takes 1 input\(s\)", (1,)),
])
def test_bad_input_overrides_are_argument_errors(layer_and_data, overrides, message, location):
    with pytest.raises(ArgumentError, match=message) as info:
        RangeLinearQuantParamLayerWrapper(layer_and_data[0], 8, 8, input_overrides=overrides)
    assert info.value.argument == "input_overrides" and info.value.location == location


def test_a_fake_quantized_layer_quantizes_its_inputs_only_when_asked(layer_and_data):
    from distiller.quantization import RangeLinearFakeQuantWrapper

    _, x, _ = layer_and_data
    with pytest.raises(ArgumentError, match="input_overrides need quantize_inputs=True"):
        RangeLinearFakeQuantWrapper(nn.Tanh(), 8, input_overrides={0: {"bits_activations": 4}})
    plain = RangeLinearFakeQuantWrapper(nn.Identity(), 8).eval()
    coarse = RangeLinearFakeQuantWrapper(nn.Identity(), 8, quantize_inputs=True,
                                         input_overrides={0: {"bits_activations": 2}}).eval()
    with torch.no_grad():
        assert plain(x).unique().numel() > 16 and coarse(x).unique().numel() <= 4  # a 2-bit input: 4 levels at most
