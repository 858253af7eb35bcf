"""PostTrainLinearQuantizer's per-layer ``fake``, ``make_identity`` and ``inputs_quant_auto_fallback`` (Distiller's
override keys): what the layers become, how they are checked, and that they survive a checkpoint and export."""
import copy
import io

import pytest
import torch
from torch import nn

from distiller.data_loggers import collect_quant_stats
from distiller.errors import ArgumentError
from distiller.modules import Concat
from distiller.quantization import (ExportError, OverrideError, PostTrainLinearQuantizer, RangeLinearFakeQuantWrapper,
                                    RangeLinearQuantParamLayerWrapper)
from distiller.quantization.export.onnx_qdq import build_qdq_model
from distiller.quantization.export.pt2e import build_pt2e_model
from distiller.quantization.q_utils import linear_dequantize, linear_quantize_clamp, quantized_range_for_mode
from distiller.quantization.range_linear.ptq_graph import fold_batch_norm
from distiller.quantization.range_linear.wrappers import FPWrapper
from distiller.quantization.replay import replay_quantization

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}


def fake_quantized(x, scale, zero_point, bits=8, mode="SYMMETRIC"):
    q = linear_quantize_clamp(x, scale, zero_point, *quantized_range_for_mode(bits, mode))
    return linear_dequantize(q, scale, zero_point)


# ------------------------------------------------------------------------------------------------------ fake
def test_fake_conv_runs_the_float_conv_and_quantizes_its_output(quantize, float_model, test_batch):
    quantizer, model = quantize(overrides={"block.conv1": {"fake": True}})
    wrapper = model.block.conv1
    assert isinstance(wrapper, RangeLinearFakeQuantWrapper) and type(wrapper.wrapped_module) is nn.Conv2d
    # float weights: the trained conv with its BatchNorm folded in, not integers
    folded = copy.deepcopy(float_model.block.conv1)
    fold_batch_norm(folded, float_model.block.bn1)
    torch.testing.assert_close(wrapper.wrapped_module.weight, folded.weight, rtol=0, atol=0)
    # its output range is its ReLU's (fused), from the calibration statistics
    _, integer = quantize()
    assert wrapper.output_scale == integer.block.conv1.output_scale
    x = torch.randn(4, 8, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = fake_quantized(folded(x), wrapper.output_scale, wrapper.output_zero_point)
        torch.testing.assert_close(wrapper(x), expected, rtol=0, atol=0)
        assert not torch.equal(integer.block.conv1(x), wrapper(x))  # integer weights differ
        assert not torch.equal(model(test_batch), integer(test_batch))
    assert ("block.conv2", 0) in quantizer.shared_inputs  # its output parameters serve the next layer


def test_fake_relu_and_max_pool_quantize_their_output_and_serve_their_consumers(quantize, stats, test_batch):
    quantizer, model = quantize(overrides={"pool": {"fake": True, "clip_acts": "AVG"}})
    assert isinstance(model.pool, RangeLinearFakeQuantWrapper) and isinstance(model.pool.wrapped_module, nn.MaxPool2d)
    assert model.pool.output_scale != model.conv1.output_scale  # its own (AVG-clipped) range
    # the residual add reads the max-pool output: its parameters, not conv1's, as without fake
    assert quantizer.shared_inputs[("block.add", 1)] == "pool"
    assert model.block.add.input_scales[1] == model.pool.output_scale
    default, _ = quantize()
    assert default.shared_inputs[("block.add", 1)] == "conv1"
    _, relu = quantize(overrides={"relu": {"fake": True}})
    assert isinstance(relu.relu, RangeLinearFakeQuantWrapper) and isinstance(relu.relu.wrapped_module, nn.ReLU)


def test_fake_with_fpq_module_and_fake_false(quantize, test_batch):
    """As in Distiller's greedy-search results: ``fake: true`` with ``fpq_module`` computes in that precision,
    ``fake: false`` with ``fpq_module`` is a float layer, ``fake: false`` alone leaves a fake-quantized layer float."""
    _, model = quantize(overrides={"block.conv1": {"fake": True, "fpq_module": 64},
                                   "relu": {"fake": True, "fpq_module": 32, "bits_weights": 8},
                                   "block.add": {"fake": False, "fpq_module": None},
                                   "avgpool": {"fake": False}})
    inner = model.block.conv1.wrapped_module
    assert isinstance(inner, FPWrapper) and inner.wrapped_module.weight.dtype == torch.float64
    assert isinstance(model.relu, RangeLinearFakeQuantWrapper) and type(model.relu.wrapped_module) is nn.ReLU
    assert type(model.block.add).__name__ == "RangeLinearQuantEltwiseAddWrapper"
    assert type(model.avgpool) is nn.AdaptiveAvgPool2d
    with torch.no_grad():
        assert model(test_batch).dtype == torch.float32


# --------------------------------------------------------------------------------------------- make_identity
@pytest.mark.parametrize("static", [True, False])
def test_make_identity_hands_the_relu_to_the_layer_before_it(quantize, test_batch, static):
    extra = {} if static else {"model_activation_stats": None}
    _, model = quantize(mode="sym", overrides={"relu": {"make_identity": True}}, **extra)
    _, default = quantize(mode="sym", **extra)
    assert type(model.relu) is nn.Identity and model.conv1.relu_fused and not default.conv1.relu_fused
    with torch.no_grad():
        # symmetric activations: conv1's quantized output has negative values, which the ReLU removes
        assert default.conv1(test_batch).min() < 0 and model.conv1(test_batch).min() == 0
        torch.testing.assert_close(model.conv1(test_batch), default.relu(default.conv1(test_batch)), rtol=0, atol=0)
        torch.testing.assert_close(model(test_batch), default(test_batch), rtol=0, atol=0)


def test_make_identity_after_a_fake_quantized_layer(quantize, test_batch):
    _, model = quantize(mode="sym", overrides={"block.add": {"fake": True}, "block.relu2": {"make_identity": True}})
    _, reference = quantize(mode="sym", overrides={"block.add": {"fake": True}})
    assert type(model.block.relu2) is nn.Identity and model.block.add.relu_fused
    with torch.no_grad():
        torch.testing.assert_close(model(test_batch), reference(test_batch), rtol=0, atol=0)


# ------------------------------------------------------------------------------ inputs_quant_auto_fallback
def test_layer_without_auto_fallback_needs_a_quantized_producer_or_input_overrides(quantize):
    with pytest.raises(OverrideError, match=r"input 0 of 'conv1' comes from no quantized layer \(the model's input"
                                            r".*inputs_quant_auto_fallback is false for it") as caught:
        quantize(overrides={"conv1": {"inputs_quant_auto_fallback": False}})
    assert caught.value.location == ("conv1", "inputs_quant_auto_fallback")
    with pytest.raises(OverrideError, match=r"input 0 of 'fc' comes from 'avgpool', which does not quantize its "
                                            r"output in that layer's format") as caught:
        quantize(overrides={"fc": {"inputs_quant_auto_fallback": False}, "avgpool": {"fake": False}})
    assert caught.value.location == ("fc", "inputs_quant_auto_fallback")
    quantizer, model = quantize(overrides={
        "conv1": {"inputs_quant_auto_fallback": False, "input_overrides": {0: {"clip_acts": "AVG"}}},
        "block.add": {"inputs_quant_auto_fallback": False}})
    assert quantizer.shared_inputs[("block.add", 0)] == "block.conv2"
    assert quantizer.shared_inputs[("block.add", 1)] == "conv1"


def test_without_auto_fallback_and_dynamic_ranges_inputs_of_quantized_layers_pass(quantize, test_batch):
    _, model = quantize(model_activation_stats=None, inputs_quant_auto_fallback=False,
                        overrides={"conv1": {"input_overrides": {0: {"from_output": True}}}})
    _, fallback = quantize(model_activation_stats=None)
    with torch.no_grad():
        torch.testing.assert_close(model(test_batch), fallback(test_batch), rtol=0, atol=0)
    with pytest.raises(ArgumentError, match="input 0 of 'conv1' comes from no quantized layer"):
        quantize(model_activation_stats=None, inputs_quant_auto_fallback=False)


# ------------------------------------------------------------------------------------------------- checking
@pytest.mark.parametrize("overrides, location, message", [
    ({"block.conv1": {"fake": "yes"}}, ("block.conv1", "fake"), "expects true or false"),
    ({"relu": {"make_identity": 1}}, ("relu", "make_identity"), "expects true or false"),
    ({"block.add": {"inputs_quant_auto_fallback": None}}, ("block.add", "inputs_quant_auto_fallback"),
     "expects true or false"),
    ({"block.conv1": {"fake": True, "bits_weights": 4}}, ("block.conv1", "bits_weights"),
     r"keeps the weights of 'block.conv1' \(Conv2d\) in floating point"),
    ({"block.conv1": {"fake": True, "bits_bias": 32}}, ("block.conv1", "bits_bias"),
     r"keeps the weights of 'block.conv1' \(Conv2d\) in floating point .*bits_bias: 32 would be ignored"),
    ({"fc": {"fake": True, "per_channel_wts": True}}, ("fc", "per_channel_wts"),
     r"per_channel_wts: True would be ignored"),
    ({"block.conv1": {"fake": True, "bits_activations": None}}, ("block.conv1", "fake"),
     "bits_activations, which is null"),
    ({"fc": {"fake": True, "fp8": True}}, ("fc", "fp8"), "contradict"),
    ({"conv1": {"make_identity": True}}, ("conv1", "make_identity"),
     r"applies to nn.ReLU layers .*; 'conv1' is Conv2d"),
    ({"relu": {"make_identity": True, "fake": True}}, ("relu", "make_identity"), "contradict"),
    ({"conv1": {"bits_activations": None}, "relu": {"make_identity": True}}, ("relu", "make_identity"),
     "reads 'conv1', which does not quantize its output"),
    ({"bn1": {"fake": True}}, ("bn1", "fake"), "'bn1' is folded into 'conv1' \\(BatchNorm folding\\); set it there"),
    ({"block.relu1": {"inputs_quant_auto_fallback": False}}, ("block.relu1", "inputs_quant_auto_fallback"),
     "is not wrapped"),
    ({"avgpool": {"inputs_quant_auto_fallback": True}}, ("avgpool", "inputs_quant_auto_fallback"),
     "set quantize_inputs: true for it"),
])
def test_bad_layer_settings_name_their_override(quantize, overrides, location, message):
    with pytest.raises(OverrideError, match=message) as caught:
        quantize(overrides=overrides)
    assert caught.value.pattern == location[0] and caught.value.location == location


class ConcatRelu(nn.Module):
    """Two linear layers joined by a Concat module whose only consumer is a ReLU."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.cat, self.relu = nn.Linear(4, 4), nn.Linear(4, 4), Concat(dim=1), nn.ReLU()

    def forward(self, x):
        return self.relu(self.cat(self.a(x), self.b(x)))


def test_a_shared_relu_cannot_become_an_identity():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return self.b(self.relu(self.a(x))) + self.relu(x)

    quantizer = PostTrainLinearQuantizer(Twice(), overrides={"relu": {"make_identity": True}})
    with pytest.raises(OverrideError, match="'relu' does not read \\(wherever it is called\\) the output of a layer"):
        quantizer.check_settings()  # what applications run before reading any data


def test_without_a_graph_inputs_cannot_be_checked_against_their_producers():
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) if y.sum() > 0 else y

    quantizer = PostTrainLinearQuantizer(Branchy(), overrides={"b": {"inputs_quant_auto_fallback": False}})
    with pytest.raises(OverrideError, match="input 0 of 'b' cannot be followed to its producer"):
        quantizer.check_settings()


def test_a_config_file_error_names_the_yaml_path_and_line(float_model, check_config_file):
    from distiller.errors import ScheduleError

    with pytest.raises(ScheduleError, match=r"at 'quantizers\.ptq\.overrides\.conv1\.inputs_quant_auto_fallback', "
                                            r"line 6: input 0 of 'conv1' comes from no quantized layer"):
        check_config_file(float_model, "      conv1:\n        inputs_quant_auto_fallback: false\n")


# ------------------------------------------------------------------------------------------ checkpoint
def test_layer_settings_survive_a_checkpoint(float_model, stats, test_batch):
    overrides = {"block.conv1": {"fake": True, "fpq_module": 64}, "relu": {"make_identity": True},
                 "block.add": {"inputs_quant_auto_fallback": False}, "avgpool": {"fake": False}}
    model = copy.deepcopy(float_model)
    quantizer = PostTrainLinearQuantizer(model, model_activation_stats=stats, overrides=overrides)
    quantizer.prepare_model(test_batch[:1])
    buffer = io.BytesIO()
    torch.save({"quantizer": quantizer.state_dict(), "weights": model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = copy.deepcopy(float_model)
    replayed = replay_quantization(fresh, saved)
    fresh.load_state_dict(saved["weights"])
    assert replayed.state_dict() == quantizer.state_dict()
    assert type(fresh.relu) is nn.Identity and fresh.conv1.relu_fused
    assert isinstance(fresh.block.conv1.wrapped_module, FPWrapper) and type(fresh.avgpool) is nn.AdaptiveAvgPool2d
    with torch.no_grad():
        torch.testing.assert_close(fresh(test_batch), model(test_batch), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- export
def test_fake_layers_and_fused_relus_are_exported(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, overrides={"block.conv1": {"fake": True}, "pool": {"fake": True},
                                                 "relu": {"make_identity": True}})
    converted = build_pt2e_model(model)  # the graph compile_int8 compiles
    kinds = {node.target: type(converted.get_submodule(node.target))
             for node in converted.graph.nodes if node.op == "call_module"}
    assert "conv1" not in kinds and "relu" not in kinds  # an int8 conv, the ReLU (an identity) fused into it
    assert kinds["block.conv1"] is nn.Conv2d and kinds["pool"] is nn.MaxPool2d  # float, between (de)quantize
    qdq = build_qdq_model(model)  # the graph export_onnx_qdq exports
    step = 1.01 / model.fc.output_scale.item()
    with torch.no_grad():
        simulated, qdq_output = model(test_batch), qdq(test_batch)
        assert (simulated - converted(test_batch)).abs().max().item() <= 2 * step
        # QuantizeLinear divides by its scale where the simulation multiplies: a rounding tie at the float conv's
        # output may fall the other way, one step there, at most two at the logits
        assert (simulated - qdq_output).abs().max().item() <= 2 * step
        assert (simulated.argmax(1) == qdq_output.argmax(1)).float().mean().item() >= 0.98


def test_export_refuses_what_it_cannot_represent(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, overrides={"block.conv1": {"fake": True, "fpq_module": 64}})
    with pytest.raises(ExportError, match=r"'block.conv1' computes in another floating-point precision.*fpq_module"):
        build_pt2e_model(model)
    torch.manual_seed(0)
    concat, x = ConcatRelu().eval(), torch.randn(8, 4)
    stats = collect_quant_stats(concat, lambda m: m(x))
    PostTrainLinearQuantizer(concat, model_activation_stats=stats, mode=ACTS_U8,
                             overrides={"relu": {"make_identity": True}}).prepare_model(x[:1])
    assert isinstance(concat.a, RangeLinearQuantParamLayerWrapper) and concat.cat.relu_fused
    with pytest.raises(ExportError, match=r"'cat' applies the ReLU after it \(make_identity\)"):
        build_pt2e_model(concat)
