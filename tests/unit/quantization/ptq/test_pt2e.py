"""PT2E lowering (quantize/dequantize form with our parameters) and inductor int8 compilation."""
import logging

import pytest
import torch
from torch import nn

from distiller.errors import MissingDependencyError
from distiller.quantization import ExportError
from distiller.quantization.export import build_qdq_model, compile_int8, parity_check, to_pt2e
from distiller.quantization.export import inductor
from distiller.quantization.export.inductor import OneDNNEmitter, check_cpp_compiler
from distiller.quantization.export.integers import int8_weight
from distiller.quantization.export.pt2e import PT2EEmitter, build_pt2e_model

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}
_QD = torch.ops.quantized_decomposed


def _targets(graph):
    return [node.target for node in graph.nodes if node.op == "call_function"]


class RoundingEveryConv(PT2EEmitter):
    """PT2E's form that rounds every convolution output, as the simulation does."""
    float_output_layers = False


@pytest.mark.parametrize("mode", [ACTS_U8, "sym"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_pt2e_graph_has_our_parameters_and_matches_the_simulation(quantize, test_batch, mode, per_channel):
    _, model = quantize(mode=mode, per_channel_wts=per_channel)
    graph_module = build_pt2e_model(model, RoundingEveryConv)
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


@pytest.mark.parametrize("mode", [ACTS_U8, "sym"])
def test_a_conv_feeding_an_add_passes_its_unrounded_output_to_it(quantize, test_batch, mode):
    _, model = quantize(mode=mode, per_channel_wts=True)
    fused = build_pt2e_model(model)
    (add,) = [node for node in fused.graph.nodes if node.target is torch.add]
    conv, residual = add.args
    assert conv.target is torch.nn.functional.conv2d  # block.conv2 (its BatchNorm folded): no quantize between
    assert residual.target is _QD.dequantize_per_tensor.default  # the shortcut: int8, as the fused kernel reads it
    (relu,) = add.users
    (quantize_out,) = relu.users
    assert relu.target is torch.nn.functional.relu or mode == ACTS_U8  # a range from 0 is clamped by quantization
    assert _QD.quantize_per_tensor.default in (relu.target, quantize_out.target)
    step = 1 / model.fc.output_scale.item()
    with torch.no_grad():
        rounded, unrounded = build_pt2e_model(model, RoundingEveryConv)(test_batch), fused(test_batch)
    # one rounding fewer (at most half a step of conv2's output) moves the logits by a few output steps
    assert 0 < (rounded - unrounded).abs().max().item() <= 6.01 * step
    assert (rounded.argmax(1) == unrounded.argmax(1)).float().mean().item() >= 0.95


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


def test_lowering_refuses_dynamic_ranges_naming_the_layer(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, model_activation_stats=None)
    with pytest.raises(ExportError, match="'conv1' uses dynamic activation ranges"):
        build_pt2e_model(model)
    with pytest.raises(ExportError, match="'conv1' uses dynamic activation ranges"):  # before compiling anything
        compile_int8(model, test_batch[:2])


def test_lowering_refuses_other_bit_widths_naming_the_setting(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, bits_parameters=4)
    with pytest.raises(ExportError, match="'conv1' uses 4-bit weights"):
        build_pt2e_model(model)
    _, model = quantize(mode=ACTS_U8, overrides={"block.conv2": {"bits_activations": 6}})
    with pytest.raises(ExportError, match="'block.conv2' has 6-bit activations"):
        compile_int8(model, test_batch[:2])


def test_missing_cpp_compiler_is_named(quantize, test_batch):
    from torch._inductor import config
    _, model = quantize(mode=ACTS_U8)
    with config.patch({"cpp.cxx": ("distiller-no-such-compiler++",)}):
        with pytest.raises(MissingDependencyError, match="C\\+\\+ compiler.*distiller-no-such-compiler"):
            compile_int8(model, test_batch[:2])


def test_onednn_lowering_uses_int8_kernels_with_fused_relu(quantize):
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    graph_module = build_pt2e_model(model, OneDNNEmitter)
    targets = _targets(graph_module.graph)
    assert targets.count(torch.ops.onednn.qconv_pointwise.default) == 5
    assert targets.count(torch.ops.onednn.qlinear_pointwise.default) == 1
    assert torch.nn.functional.conv2d not in targets and _QD.dequantize_per_channel.default not in targets


def test_missing_torchao_is_reported_not_raised(monkeypatch):
    """Without torchao the fast path is off (False), but a broken install of something else still raises."""
    import importlib

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name="torchao")
    inductor.torchao_fusion_passes.cache_clear()
    monkeypatch.setattr(importlib, "import_module", missing)
    try:
        assert inductor.torchao_fusion_passes() is False
        inductor.torchao_fusion_passes.cache_clear()

        def broken(name):
            raise ModuleNotFoundError("No module named 'sympy'", name="sympy")
        monkeypatch.setattr(importlib, "import_module", broken)
        with pytest.raises(ModuleNotFoundError, match="sympy"):
            inductor.torchao_fusion_passes()
    finally:
        monkeypatch.undo()
        inductor.torchao_fusion_passes.cache_clear()


class ConvAddPool(nn.Module):
    """conv -> relu, a residual add with the pooled input, max-pool, linear: the tiny shapes of the zoo."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x)) + x), 1))


@pytest.fixture
def conv_add_pool():
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer
    torch.manual_seed(0)
    model, x = ConvAddPool().eval(), torch.randn(16, 4, 4, 4)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats).prepare_model(x[:1])  # defaults: symmetric
    return model, x


@pytest.mark.slow  # inductor compiles C++ (tens of seconds on two cores)
def test_compiled_without_torchao_uses_explicit_kernels_and_warns(conv_add_pool, monkeypatch, caplog):
    from torch._dynamo.utils import counters
    check_cpp_compiler()
    model, x = conv_add_pool
    monkeypatch.setattr(inductor, "torchao_fusion_passes", lambda: False)
    inductor._warn_slow_path.cache_clear()
    counters.clear()
    with caplog.at_level(logging.WARNING, logger=inductor.__name__):
        compiled = compile_int8(model, x)
    assert [r.message for r in caplog.records if "torchao is not installed" in r.message]
    assert compiled.fusion == "onednn" and compiled.int8_layers == compiled.quantized_layers == 2
    assert counters["inductor"]["qconv_unary_lower_count"] == 1
    assert counters["inductor"]["qlinear_unary_lower_count"] == 1
    result = parity_check(model, [x], converted_model=compiled)
    assert result["pytorch_int8"]["top1_agreement"] == 1.0
    assert result["pytorch_int8"]["max_abs_diff"] <= 1.01 / model.fc.output_scale.item()


@pytest.mark.slow  # inductor compiles C++ (tens of seconds on two cores)
@pytest.mark.filterwarnings("error::UserWarning:torch._inductor.mkldnn_lowerings")  # int64 weight zero points
def test_compiled_with_torchao_fuses_every_layer_and_matches(quantize, test_batch):
    pytest.importorskip("torchao")
    from torch._dynamo.utils import counters
    check_cpp_compiler()
    _, model = quantize(per_channel_wts=True)  # the defaults: symmetric activations, as uint8 with zero point 128
    counters.clear()
    compiled = compile_int8(model, test_batch)
    assert compiled.fusion == "torchao" and compiled.int8_layers == compiled.quantized_layers == 6
    assert counters["inductor"]["qconv_weight_prepack_matcher_count"] == 5
    assert counters["inductor"]["qlinear_weight_prepack_matcher_count"] == 1
    assert counters["inductor"]["qconv_unary_lower_count"] == 4  # conv (+relu) -> quantize as one int8 kernel
    assert counters["inductor"]["qmaxpool2d_matcher_count"] == 1
    assert counters["inductor"]["qconv2d_binary_lower_count"] == 1  # conv + add + relu -> quantize: one kernel
    with torch.no_grad():
        kernels, graph = compiled(test_batch), compiled.lowered(test_batch)  # the graph: tested against the simulation
    assert (kernels.argmax(1) == graph.argmax(1)).float().mean().item() >= 0.95  # close logits of a random model
    assert (kernels - graph).abs().max().item() <= 2.01 / model.fc.output_scale.item()


def test_lowering_refuses_an_infinite_calibration_range_naming_the_layer(float_model, stats):
    """A model whose float activations overflow (deep random networks) has scale 0 there: a clear error, not a
    ZeroDivisionError in the middle of the lowering."""
    import copy
    from distiller.quantization import PostTrainLinearQuantizer
    overflowing = copy.deepcopy(stats)
    overflowing["fc"]["output"]["max"] = float("inf")
    model = copy.deepcopy(float_model)
    PostTrainLinearQuantizer(model, model_activation_stats=overflowing).prepare_model(torch.randn(1, 3, 8, 8))
    assert float(model.fc.output_scale) == 0
    with pytest.raises(ExportError, match="'fc' has an infinite or NaN calibration range for its output"):
        build_pt2e_model(model)


class LayerScaleBlock(nn.Module):
    """conv -> a learned per-channel scale read as a tensor inside a submodule (as ConvNeXt's layer_scale)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.layer_scale = nn.Parameter(torch.linspace(0.5, 1.5, 4).reshape(4, 1, 1))

    def forward(self, x):
        return self.conv(x) * self.layer_scale


def test_lowering_reads_tensors_of_submodules():
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer
    torch.manual_seed(0)
    model, x = nn.Sequential(LayerScaleBlock(), nn.Flatten(), nn.Linear(64, 3)).eval(), torch.randn(8, 3, 4, 4)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats).prepare_model(x[:1])
    lowered = build_pt2e_model(model)
    assert any(node.op == "get_attr" and node.target == "0.layer_scale" for node in lowered.graph.nodes)
    with torch.no_grad():
        assert (model(x) - lowered(x)).abs().max().item() <= 2.01 / model[2].output_scale.item()


def test_lowering_refuses_a_quantized_embedding_naming_the_override():
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).eval()
    tokens = torch.randint(0, 10, (5, 3))
    stats = collect_quant_stats(model, lambda m: m(tokens))
    PostTrainLinearQuantizer(model, model_activation_stats=stats).prepare_model(tokens[:1])
    with pytest.raises(ExportError, match=r"'0' \(RangeLinearEmbeddingWrapper\) has no integer kernel.*"
                                          r"overrides \{'0': \{bits_weights: null\}\}"):
        build_pt2e_model(model)


def test_a_qat_model_is_converted_never_walked_as_float(float_model):
    """The lowering converts a QAT model (test_pt2e_qat.py), here one with QAT's default 32-bit settings, which it
    refuses by name; the walk itself, given the QAT model, refuses it instead of copying it as a float model."""
    from distiller.quantization import QuantAwareTrainRangeLinearQuantizer
    from distiller.quantization.export.walk import walk_quantized_model
    QuantAwareTrainRangeLinearQuantizer(float_model).prepare_model(torch.randn(1, 3, 8, 8))
    float_model.eval()
    with pytest.raises(ExportError, match="'relu' was trained with 32-bit activations"):
        build_pt2e_model(float_model)
    with pytest.raises(ExportError, match="'relu.fake_q' is quantization-aware training's fake quantization, "
                                          "which the walk does not read"):
        walk_quantized_model(float_model, PT2EEmitter)


@pytest.mark.parametrize("mode", [ACTS_U8, "sym"])
def test_relu6_is_applied_by_the_conv_before_it(relu6_model, mode):
    model, _ = relu6_model(mode)
    lowered = build_pt2e_model(model)
    for conv in (node for node in lowered.graph.nodes if node.target is torch.nn.functional.conv2d):
        (user,) = conv.users  # conv -> [ReLU6] -> quantize: the pattern of inductor's fused int8 conv
        if mode == ACTS_U8:  # a range [0, m <= 6] clamps as the ReLU6 does: nothing to apply
            assert user.target is _QD.quantize_per_tensor.default
        else:
            assert user.target is torch.nn.functional.hardtanh and user.args[1:] == (0.0, 6.0)
            assert next(iter(user.users)).target is _QD.quantize_per_tensor.default
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        assert (model(x) - lowered(x)).abs().max().item() <= 2.01 / model.fc.output_scale.item()


def test_onednn_kernels_apply_relu6_as_a_hardtanh_post_op(relu6_model):
    model, _ = relu6_model("sym")
    lowered = build_pt2e_model(model, OneDNNEmitter)
    convs = [node for node in lowered.graph.nodes if node.target is torch.ops.onednn.qconv_pointwise.default]
    assert [node.args[-4:-1] for node in convs] == [(torch.uint8, "hardtanh", [0.0, 6.0])] * 2
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        assert (model(x) - lowered(x)).abs().max().item() <= 2.01 / model.fc.output_scale.item()


def test_lowered_constants_are_saved_compactly_and_reload(quantize, test_batch):
    import io
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    lowered = build_pt2e_model(model)
    state = lowered.state_dict()
    assert not [key for key in state if key.endswith("weight_zero_point")]  # zeros of symmetric weights: not saved
    storages = {tensor.untyped_storage().data_ptr() for tensor in state.values()}
    assert len(storages) == len({tensor.dtype for tensor in state.values()}) == 2  # int8 weights; float scales, biases
    int8_bytes = sum(t.numel() for t in state.values() if t.dtype == torch.int8)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    float_bytes = 4 * sum(t.numel() for t in state.values() if t.is_floating_point())
    assert buffer.getbuffer().nbytes < int8_bytes + float_bytes + 4096  # one record per storage, not per tensor
    buffer.seek(0)
    fresh = build_pt2e_model(model)
    for tensor in fresh.state_dict().values():
        tensor.zero_()
    fresh.load_state_dict(torch.load(buffer))
    with torch.no_grad():
        torch.testing.assert_close(fresh(test_batch), lowered(test_batch), rtol=0, atol=0)


def test_a_linear_feeding_an_add_keeps_its_rounded_output():
    """Only convolutions pass their output unrounded (inductor's fused conv+add kernel); a Linear's output is
    quantized as in the simulation."""
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.fc2(self.fc1(x) + x)

    model = Residual().eval()
    x = torch.randn(16, 8)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats).prepare_model(x[:1])
    (add,) = [node for node in build_pt2e_model(model).graph.nodes if node.target is torch.add]
    assert all(arg.target is _QD.dequantize_per_tensor.default for arg in add.args)


def test_a_weights_only_layer_with_a_quantized_input_is_an_int8_layer_with_a_float_output():
    """``bits_activations: null`` keeps a layer's output in float (what QAT leaves before a residual add); with a
    quantized input its int8 weights run as an int8 kernel with a float output, computing the same values."""
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    x = torch.randn(32, 3, 8, 8)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=ACTS_U8, per_channel_wts=True,
                             overrides={"3": {"bits_activations": None}}).prepare_model(x[:1])
    lowered = build_pt2e_model(model)
    assert _targets(lowered.graph).count(_QD.dequantize_per_channel.default) == 2  # the Linear too
    (output,) = [node for node in lowered.graph.nodes if node.op == "output"]
    linear = output.args[0]
    assert linear.target is torch.nn.functional.linear  # not quantized after
    assert linear.args[1].target is _QD.dequantize_per_channel.default
    with torch.no_grad():
        torch.testing.assert_close(lowered(x), model(x), rtol=1e-4, atol=1e-5)
    assert torch.nn.functional.linear not in _targets(build_pt2e_model(model, RoundingEveryConv).graph)  # float module
