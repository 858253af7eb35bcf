"""PostTrainLinearQuantizer's per-layer input settings (Distiller's ``input_overrides`` and ``quantize_inputs``):
they reach the wrappers, are checked like every other override and survive a checkpoint."""
import copy
import io

import pytest
import torch

from distiller.quantization import OverrideError, PostTrainLinearQuantizer
from distiller.quantization.range_linear import saturation_range_from_stats
from distiller.quantization.q_utils import (linear_dequantize, linear_quant_params_from_min_max, linear_quantize_clamp,
                                            quantized_range_for_mode)
from distiller.quantization.replay import replay_quantization


def params_of(stats, bits, clip="NONE", mode="SYMMETRIC"):
    """Distiller (scale, zero point) of a tensor with calibration ``stats`` at ``bits``."""
    lo, hi = saturation_range_from_stats(stats, clip, bits)
    scale, zero_point = linear_quant_params_from_min_max(bits, mode, torch.tensor(lo), torch.tensor(hi))
    return scale.item(), zero_point.item()


def fake_quantized(x, scale, zero_point, bits):
    return linear_dequantize(linear_quantize_clamp(x, scale, zero_point, *quantized_range_for_mode(bits, "SYMMETRIC")),
                             scale, zero_point)


def test_an_input_override_quantizes_the_model_input_with_its_bits(quantize, stats, float_model, test_batch):
    _, default = quantize()
    _, four = quantize(overrides={"conv1": {"input_overrides": {0: {"bits_activations": 4}}}})
    assert four.conv1.input_settings[0].num_bits == 4 and default.conv1.input_settings == {}
    assert four.conv1.input_scales[0].item() == pytest.approx(params_of(stats["conv1"]["inputs"][0], 4)[0])
    assert default.conv1.input_scales[0].item() == pytest.approx(params_of(stats["conv1"]["inputs"][0], 8)[0])
    assert four.conv1.output_scale == default.conv1.output_scale  # the output keeps 8 bits
    with torch.no_grad():
        expected = float_model(test_batch)
        error4, error8 = (four(test_batch) - expected).abs().mean(), (default(test_batch) - expected).abs().mean()
    assert error4 > 1.5 * error8 and error4 < 0.1 * expected.abs().mean()  # coarser input, still close


def test_an_overridden_input_takes_its_own_statistics_instead_of_its_producers_parameters(quantize, stats):
    shared, _ = quantize(clip_acts="AVG")
    assert shared.shared_inputs[("fc", 0)] == "avgpool"
    # Distiller's example: no clipping at the last layer's output, its input clipped at the averaged extremes
    quantizer, model = quantize(clip_acts="AVG", overrides={"fc": {"clip_acts": "NONE", "input_overrides": {
        0: {"clip_acts": "AVG"}}}})
    assert ("fc", 0) not in quantizer.shared_inputs
    assert model.fc.input_scales[0].item() == pytest.approx(params_of(stats["fc"]["inputs"][0], 8, "AVG")[0])
    # from_output: the input takes the layer's own output settings (here: no clipping)
    quantizer, model = quantize(clip_acts="AVG", overrides={"fc": {"clip_acts": "NONE", "input_overrides": {
        0: {"from_output": True}}}})
    assert ("fc", 0) not in quantizer.shared_inputs
    assert model.fc.input_scales[0].item() == pytest.approx(params_of(stats["fc"]["inputs"][0], 8, "NONE")[0])
    assert params_of(stats["fc"]["inputs"][0], 8, "NONE") != params_of(stats["fc"]["inputs"][0], 8, "AVG")


def test_one_input_of_a_residual_add_overridden(quantize, stats, test_batch):
    _, default = quantize()
    quantizer, model = quantize(overrides={"block.add": {"input_overrides": {"1": {"bits_activations": 4}}}})
    assert ("block.add", 1) not in quantizer.shared_inputs and quantizer.shared_inputs[("block.add", 0)]
    assert model.block.add.input_scales[1].item() == pytest.approx(params_of(stats["block.add"]["inputs"][1], 4)[0])
    assert model.block.add.input_scales[0] == default.block.add.input_scales[0]
    with torch.no_grad():
        assert not torch.equal(model(test_batch), default(test_batch))


def _prepared(model, **kwargs):
    model = copy.deepcopy(model)
    quantizer = PostTrainLinearQuantizer(model, **kwargs)
    quantizer.prepare_model(torch.zeros(1, 3, 4, 4))
    return quantizer, model


def test_quantize_inputs_quantizes_the_input_of_a_fake_quantized_layer(tanh_stem):
    model, stats, x = tanh_stem
    _, plain = _prepared(model, model_activation_stats=stats, overrides={"tanh": {"quantize_inputs": False}})
    _, quantized = _prepared(model, model_activation_stats=stats, overrides={"tanh": {
        "quantize_inputs": True, "input_overrides": {0: {"bits_activations": 4}}}})
    out_scale, out_zp = params_of(stats["tanh"]["output"], 8)
    assert not plain.tanh.quantize_inputs and plain.tanh.input_scales.numel() == 0
    with torch.no_grad():
        torch.testing.assert_close(plain.tanh(x), fake_quantized(torch.tanh(x), out_scale, out_zp, 8))
        in_scale, in_zp = params_of(stats["tanh"]["inputs"][0], 4)
        assert quantized.tanh.quantize_inputs and quantized.tanh.input_scales[0].item() == pytest.approx(in_scale)
        expected = fake_quantized(torch.tanh(fake_quantized(x, in_scale, in_zp, 4)), out_scale, out_zp, 8)
        torch.testing.assert_close(quantized.tanh(x), expected)
        assert not torch.equal(quantized(x), plain(x))


def test_quantize_inputs_with_dynamic_ranges(tanh_stem):
    model, _, x = tanh_stem
    _, quantized = _prepared(model, overrides={"tanh": {"quantize_inputs": True}})

    def on_8_bit_grid(t):  # symmetric 8 bits over the tensor's own range
        scale, zero_point = linear_quant_params_from_min_max(8, "SYMMETRIC", t.min(), t.max())
        return fake_quantized(t, scale, zero_point, 8)

    with torch.no_grad():
        torch.testing.assert_close(quantized.tanh(x), on_8_bit_grid(torch.tanh(on_8_bit_grid(x))))
        assert not torch.equal(quantized.tanh(x), on_8_bit_grid(torch.tanh(x)))


def test_inputs_of_a_fake_quantized_layer_keep_their_producers_parameters(quantize, test_batch):
    quantizer, model = quantize(overrides={"avgpool": {"quantize_inputs": True}})
    assert quantizer.shared_inputs[("avgpool", 0)] == "cat" and model.avgpool.on_input_grid
    _, default = quantize()
    with torch.no_grad():
        torch.testing.assert_close(model(test_batch), default(test_batch), rtol=0, atol=0)  # re-quantizing: identity


@pytest.mark.parametrize("overrides, location, message", [
    ({"conv1": {"input_overrides": {0: {"bits": 4}}}}, ("conv1", "input_overrides", 0, "bits"),
     r"argument 'overrides\['conv1'\]\['input_overrides'\]\[0\]' has unknown setting 'bits'"),
    ({"conv1": {"input_overrides": {0: 4}}}, ("conv1", "input_overrides", 0), "expects a mapping of settings"),
    ({"conv1": {"input_overrides": [4]}}, ("conv1", "input_overrides"), "expects a mapping of input index"),
    ({"conv1": {"input_overrides": {"first": {}}}}, ("conv1", "input_overrides", "first"), "input indices"),
    ({"conv1": {"input_overrides": {0: {"bits_activations": 1}}}}, ("conv1", "input_overrides", 0, "bits_activations"),
     r"expects an integer in \[2, 32\]"),
    ({"conv1": {"input_overrides": {0: {"mode": "symetric"}}}}, ("conv1", "input_overrides", 0, "mode"), "symetric"),
    ({"conv1": {"input_overrides": {0: {"from_output": True, "clip_acts": "AVG"}}}}, ("conv1", "input_overrides", 0),
     "'from_output' takes the output's settings and no other"),
    ({"conv1": {"input_overrides": {1: {"bits_activations": 4}}}}, ("conv1", "input_overrides", 1),
     r"layer 'conv1' \(Conv2d\): input_overrides\[1\]: the layer takes 1 input\(s\)"),
    ({"cat": {"input_overrides": {2: {"bits_activations": 4}}}}, ("cat", "input_overrides", 2), "takes 2 input"),
    ({"conv1": {"input_overrides": {0: {"clip_acts": "N_STD"}}}}, ("conv1", "input_overrides", 0, "clip_acts"),
     "clip_acts N_STD needs clip_n_stds"),
    ({"relu": {"input_overrides": {0: {"bits_activations": 4}}}}, ("relu", "input_overrides"), "is not wrapped"),
    ({"avgpool": {"input_overrides": {0: {"bits_activations": 4}}}}, ("avgpool", "input_overrides"),
     "set quantize_inputs: true for it"),
    ({"conv1": {"bits_activations": None, "input_overrides": {0: {"bits_activations": 4}}}},
     ("conv1", "input_overrides"), "has float activations"),
    ({"conv1": {"quantize_inputs": True}}, ("conv1", "quantize_inputs"), "always quantizes its input"),
    ({"conv1": {"quantize_inputs": "yes"}}, ("conv1", "quantize_inputs"), "expects true or false"),
])
def test_bad_input_settings_name_their_override(quantize, overrides, location, message):
    with pytest.raises(OverrideError, match=message) as caught:
        quantize(overrides=overrides)
    assert caught.value.pattern == location[0] and caught.value.location == location


def test_bad_input_indices_are_found_before_preparation(float_model):
    quantizer = PostTrainLinearQuantizer(copy.deepcopy(float_model), overrides={"cat": {"input_overrides": {
        5: {"bits_activations": 4}}}})
    with pytest.raises(OverrideError, match="takes 2 input"):
        quantizer.check_settings()  # what applications run before reading any data


def test_input_settings_survive_a_checkpoint(tanh_stem):
    model, stats, x = tanh_stem
    overrides = {"tanh": {"quantize_inputs": True, "input_overrides": {0: {"bits_activations": 6}}},
                 "fc": {"input_overrides": {0: {"from_output": True}}}}
    quantizer, quantized = _prepared(model, model_activation_stats=stats, overrides=overrides)
    buffer = io.BytesIO()
    torch.save({"quantizer": quantizer.state_dict(), "weights": quantized.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert dict(saved["quantizer"]["args"]["overrides"])["tanh"]["input_overrides"] == {"0": {"bits_activations": 6}}
    fresh = copy.deepcopy(model)
    replayed = replay_quantization(fresh, saved)
    fresh.load_state_dict(saved["weights"])
    assert replayed.state_dict() == quantizer.state_dict()
    assert fresh.tanh.quantize_inputs and fresh.tanh.input_settings[0].num_bits == 6
    assert 0 in fresh.fc.input_settings and ("fc", 0) not in replayed.shared_inputs
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), quantized(x), rtol=0, atol=0)


def test_a_config_file_error_names_the_yaml_path_and_line(float_model, check_config_file):
    from distiller.errors import ScheduleError

    with pytest.raises(ScheduleError, match=r"at 'quantizers\.ptq\.overrides\.conv1\.input_overrides\[0\]\.bits', "
                                            r"line 8: .*unknown setting 'bits'; valid: from_output, bits_activations"):
        check_config_file(float_model, "      conv1:\n        input_overrides:\n          0:\n            bits: 4\n")
