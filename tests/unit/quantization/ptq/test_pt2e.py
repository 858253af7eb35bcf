"""PT2E lowering (quantize/dequantize form with our parameters) and inductor int8 compilation."""
import pytest
import torch

from distiller.errors import MissingDependencyError
from distiller.quantization import ExportError
from distiller.quantization.export import build_qdq_model, compile_int8, parity_check, to_pt2e
from distiller.quantization.export.pt2e import build_pt2e_model, check_cpp_compiler, int8_weight

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}
_QD = torch.ops.quantized_decomposed


def _targets(graph):
    return [node.target for node in graph.nodes if node.op == "call_function"]


@pytest.mark.parametrize("mode", [ACTS_U8, "sym"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_pt2e_graph_has_our_parameters_and_matches_the_simulation(quantize, test_batch, mode, per_channel):
    _, model = quantize(mode=mode, per_channel_wts=per_channel)
    graph_module = build_pt2e_model(model)
    targets = _targets(graph_module.graph)
    assert targets.count(_QD.dequantize_per_channel.default) == 6  # every conv/linear: int8 per-channel weights
    quantizes = [node for node in graph_module.graph.nodes if node.target is _QD.quantize_per_tensor.default]
    assert all(node.args[3:] == (0, 255, torch.uint8) for node in quantizes)  # symmetric -> uint8, zp 128
    conv1_out = next(node for node in graph_module.graph.nodes if node.target is torch.nn.functional.conv2d)
    while conv1_out.target is not _QD.quantize_per_tensor.default:  # through the fused ReLU, if any
        (conv1_out,) = conv1_out.users
    expected_zp = 0 if mode == ACTS_U8 else 128 - round(float(model.conv1.output_zero_point))
    assert conv1_out.args[1] == pytest.approx(1 / model.conv1.output_scale.item())
    assert conv1_out.args[2] == expected_zp
    step = 1 / model.fc.output_scale.item()
    with torch.no_grad():
        simulated, lowered, qdq = model(test_batch), graph_module(test_batch), build_qdq_model(model)(test_batch)
    # the tiny random model's logits are close: one or two output steps (float rounding ties of the float
    # convolutions) move a few arg-maxes; the ONNX QDQ form of the same model computes the same values
    assert (simulated.argmax(1) == lowered.argmax(1)).float().mean().item() >= 0.95
    assert (simulated - lowered).abs().max().item() <= 2.01 * step
    assert (qdq - lowered).abs().max().item() <= 1.01 * step


def test_int8_weight_reproduces_the_simulated_weights(quantize):
    _, model = quantize(mode=ACTS_U8, per_channel_wts=False)
    integers, scales = int8_weight(model.conv1)
    assert integers.dtype == torch.int8 and scales.shape == (integers.shape[0],)
    torch.testing.assert_close(integers.float() * scales.reshape(-1, 1, 1, 1),
                               model.conv1.dequantized_weight().float(), rtol=1e-5, atol=1e-7)


def test_to_pt2e_exports_a_dynamic_batch_program(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    program = to_pt2e(model, test_batch[:1])
    assert isinstance(program, torch.export.ExportedProgram)
    targets = _targets(program.graph)
    assert _QD.quantize_per_tensor.default in targets and _QD.dequantize_per_channel.default in targets
    with torch.no_grad():
        assert program.module()(test_batch[:5]).shape[0] == 5


def test_lowering_refuses_dynamic_ranges_naming_the_layer(quantize):
    _, model = quantize(mode=ACTS_U8, model_activation_stats=None)
    with pytest.raises(ExportError, match="'conv1' uses dynamic activation ranges"):
        build_pt2e_model(model)


def test_lowering_refuses_other_bit_widths_naming_the_setting(quantize):
    _, model = quantize(mode=ACTS_U8, bits_parameters=4)
    with pytest.raises(ExportError, match="'conv1' uses 4-bit weights"):
        build_pt2e_model(model)


def test_missing_cpp_compiler_is_named(quantize, test_batch):
    from torch._inductor import config
    _, model = quantize(mode=ACTS_U8)
    with config.patch({"cpp.cxx": ("distiller-no-such-compiler++",)}):
        with pytest.raises(MissingDependencyError, match="C\\+\\+ compiler.*distiller-no-such-compiler"):
            compile_int8(model, test_batch[:2])


def test_onednn_lowering_uses_int8_kernels_with_fused_relu(quantize):
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    graph_module = build_pt2e_model(model, onednn=True)
    targets = _targets(graph_module.graph)
    assert targets.count(torch.ops.onednn.qconv_pointwise.default) == 5
    assert targets.count(torch.ops.onednn.qlinear_pointwise.default) == 1
    assert torch.nn.functional.conv2d not in targets and _QD.dequantize_per_channel.default not in targets


@pytest.mark.slow  # inductor compiles C++ (tens of seconds on two cores)
def test_compiled_int8_model_is_fused_and_matches(quantize, test_batch):
    from torch._dynamo.utils import counters
    check_cpp_compiler()
    _, model = quantize(mode="sym", per_channel_wts=True)
    counters.clear()
    compiled = compile_int8(model, test_batch)
    assert counters["inductor"]["qconv_unary_lower_count"] == 5
    assert counters["inductor"]["qlinear_unary_lower_count"] == 1
    result = parity_check(model, [test_batch], converted_model=compiled)
    assert result["pytorch_int8"]["top1_agreement"] >= 0.95  # as the QDQ form on this model (close logits)
    assert result["pytorch_int8"]["max_abs_diff"] <= 2.01 / model.fc.output_scale.item()
