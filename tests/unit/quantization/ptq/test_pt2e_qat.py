"""Lowering of a quantization-aware-trained range-linear model (its post-training-quantized equivalent)."""
import logging

import pytest
import torch
from torch import nn

from distiller.quantization import ExportError, QuantAwareTrainRangeLinearQuantizer
from distiller.quantization.export import build_qdq_model, to_pt2e
from distiller.quantization.export.from_qat import post_train_equivalent
from distiller.quantization.export.pt2e import build_pt2e_model
from distiller.quantization.range_linear.param_wrappers import RangeLinearQuantParamLayerWrapper
from distiller.quantization.range_linear.wrappers import RangeLinearFakeQuantWrapper

_QD = torch.ops.quantized_decomposed


class ResidualNet(nn.Module):
    """conv-bn-relu stem, a residual block (its second conv feeds the add, the ReLU follows the add), linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.conv3, self.bn3, self.relu3 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(self.relu2(self.bn2(self.conv2(x)))))
        return self.fc(torch.flatten(self.pool(self.relu3(y + x)), 1))


def _qat_model(steps=4, **settings):
    """A ResidualNet trained ``steps`` QAT steps on random data (8-bit unless ``settings`` say otherwise)."""
    torch.manual_seed(0)
    model = ResidualNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    settings = {"bits_activations": 8, "bits_weights": 8, **settings}
    QuantAwareTrainRangeLinearQuantizer(model, optimizer, **settings).prepare_model(torch.randn(1, 3, 8, 8))
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(16, 3, 8, 8)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _logit_bound(model):
    """How far the logits move when the last quantized activation (relu3, averaged by the pooling) moves by one
    quantization step everywhere: sum_j |W_fc[i, j]| * step, the largest over the classes. The lowering differs
    from QAT's forward by single-step rounding flips (integer instead of float accumulation, the bias on the
    accumulator grid, a channel's largest weight that QAT rounds to +128 and int8 clamps to 127), so its logits
    stay well within this."""
    step = 1 / float(model.relu3.fake_q.scale)
    return (model.fc.float_weight.abs().sum(1).max() * step).item()


@pytest.mark.parametrize("settings", [{"per_channel_wts": True}, {"per_channel_wts": False, "fold_bn": True},
                                      {"mode": {"activations": "asym_u", "weights": "sym"}}])
def test_lowered_qat_model_agrees_with_its_eval_forward(settings):
    model = _qat_model(**settings)
    x = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        reference, lowered, qdq = model(x), build_pt2e_model(model)(x), build_qdq_model(model)(x)
    assert (reference.argmax(1) == lowered.argmax(1)).float().mean().item() >= 0.95
    assert (reference - lowered).abs().max().item() <= _logit_bound(model)
    torch.testing.assert_close(qdq, lowered, rtol=0, atol=1e-5)  # the ONNX QDQ form: the same model


def test_to_pt2e_accepts_a_qat_model_and_says_so(caplog):
    model = _qat_model()
    x = torch.randn(32, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="distiller.quantization.export.from_qat"):
        program = to_pt2e(model, x[:1])
    assert "quantization-aware-trained model through its post-training-quantized equivalent" in caplog.text
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    # conv1, conv2: int8 layers; conv3, whose output QAT leaves in float for the add: int8 weights, float output
    assert targets.count(_QD.dequantize_per_channel.default) == 3
    (conv3,) = [arg for node in program.graph.nodes if node.target is torch.ops.aten.add.Tensor
                for arg in node.args if getattr(arg, "target", None) is torch.ops.aten.conv2d.default]
    assert conv3.args[0].target is _QD.dequantize_per_tensor.default  # its input: relu2's integers
    assert conv3.args[1].target is _QD.dequantize_per_channel.default
    with torch.no_grad():
        reference, lowered = model(x), program.module()(x)
    assert (reference.argmax(1) == lowered.argmax(1)).float().mean().item() >= 0.95
    assert (reference - lowered).abs().max().item() <= _logit_bound(model)


def test_equivalent_model_uses_the_tracked_ranges_and_keeps_float_outputs_float():
    """Integer layers take the ranges QAT tracked (the fused ReLU's, the input's); a layer whose output QAT left in
    float keeps it (weights only), and the ReLU after it quantizes by itself."""
    model = _qat_model(per_channel_wts=True)
    ptq = post_train_equivalent(model)
    for layer, relu in (("conv1", "relu1"), ("conv2", "relu2")):
        wrapper = ptq.get_submodule(layer)
        assert isinstance(wrapper, RangeLinearQuantParamLayerWrapper) and wrapper.num_bits_acts == 8
        assert wrapper.output_scale.item() == pytest.approx(model.get_submodule(relu).fake_q.scale.item())
        assert wrapper.per_channel_wts
    assert ptq.conv1.input_scales[0].item() == pytest.approx(model.inputs_quant.scale.item())
    for layer in ("conv3", "fc"):
        assert ptq.get_submodule(layer).num_bits_acts is None and ptq.get_submodule(layer).num_bits_params == 8
    assert isinstance(ptq.relu3, RangeLinearFakeQuantWrapper)
    assert ptq.relu3.output_scale.item() == pytest.approx(model.relu3.fake_q.scale.item())
    # the trained float weights (folded with bn1), not the quantized buffer QAT left from the last training step
    factor = model.bn1.weight / torch.sqrt(model.bn1.running_var + model.bn1.eps)
    folded = model.conv1.float_weight * factor.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(ptq.conv1.dequantized_weight(), folded, atol=1.01 / ptq.conv1.w_scale.min().item(),
                               rtol=0)


class BranchNet(nn.Module):
    """conv-bn-ReLU6 feeding two conv-ReLU branches whose outputs are added and go through a ReLU, then linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()
        self.conv2, self.relu2, self.conv3, self.relu3 = nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU()
        self.relu4, self.fc = nn.ReLU(), nn.Linear(8 * 64, 5)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.relu4(self.relu2(self.conv2(x)) + self.relu3(self.conv3(x))), 1))


def test_relu6_and_an_add_of_quantized_branches_lower_to_integer_layers():
    """A ReLU6 fuses into its conv and keeps quantizing by itself (its consumers read it); an add of two branches
    QAT quantized (their ReLUs), followed by a fake-quantized ReLU, is an integer add with that ReLU fused."""
    torch.manual_seed(0)
    model = BranchNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    QuantAwareTrainRangeLinearQuantizer(model, optimizer, bits_activations=8, bits_weights=8,
                                        per_channel_wts=True).prepare_model(torch.randn(1, 3, 8, 8))
    for _ in range(3):
        loss = model(torch.randn(16, 3, 8, 8)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    ptq = post_train_equivalent(model)
    assert [ptq.get_submodule(name).num_bits_acts for name in ("conv1", "conv2", "conv3", "add")] == [8] * 4
    assert ptq.add.output_scale.item() == pytest.approx(model.relu4.fake_q.scale.item())
    assert ptq.relu1.output_scale.item() == pytest.approx(ptq.conv1.output_scale.item())
    assert ptq.conv2.input_scales[0].item() == pytest.approx(model.relu1.fake_q.scale.item())
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        reference, lowered = model(x), build_pt2e_model(model)(x)
    step = 1 / float(model.relu4.fake_q.scale)  # as in _logit_bound: one step of the last quantized activation
    assert (reference - lowered).abs().max().item() <= (model.fc.float_weight.abs().sum(1).max() * step).item()
    assert (reference.argmax(1) == lowered.argmax(1)).float().mean().item() >= 0.95


def test_the_qat_model_is_not_modified():
    model = _qat_model()
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        before_out = model(x)  # the eval forward refreshes the quantized weights from the float copies
    before = {name: value.clone() for name, value in model.state_dict().items()}
    to_pt2e(model, x[:1])
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert isinstance(model.relu1.fake_q.scale, torch.Tensor) and not model.training
    with torch.no_grad():
        assert torch.equal(model(x), before_out)  # still the QAT model: hooks and fake quantization in place


@pytest.mark.parametrize("settings, message", [
    ({"bits_activations": 4}, r"'relu1' was trained with 4-bit activations \(bits_activations\); integer kernels "
                              r"take 8-bit activations"),
    ({"bits_weights": 4}, r"'conv1' was trained with 4-bit weights \(bits_weights\)"),
    ({"num_bits_inputs": 6}, r"'inputs_quant' was trained with 6-bit activations \(num_bits_inputs\)"),
])
def test_other_bit_widths_are_refused_naming_the_layer_and_setting(settings, message):
    model = _qat_model(steps=1, **settings)
    with pytest.raises(ExportError, match=message):
        to_pt2e(model, torch.randn(1, 3, 8, 8))


def test_asymmetric_weights_are_refused_naming_the_layer():
    model = _qat_model(steps=1, mode={"activations": "asym_u", "weights": "asym_u"})
    with pytest.raises(ExportError, match="'conv1' has ASYMMETRIC_UNSIGNED weights; integer kernels take symmetric"):
        build_pt2e_model(model)


def test_an_untrained_qat_model_is_refused():
    """Without a training step QAT has no tracked range (its eval forward measures each batch)."""
    model = _qat_model(steps=0)
    with pytest.raises(ExportError, match="'relu1', 'relu2', 'relu3', 'inputs_quant' never saw a training batch"):
        build_pt2e_model(model)


@pytest.mark.slow  # inductor compiles C++ (tens of seconds on two cores)
def test_compile_int8_runs_a_qat_model_with_int8_kernels():
    pytest.importorskip("torchao")
    from distiller.quantization.export import check_cpp_compiler, compile_int8
    check_cpp_compiler()
    model = _qat_model()
    x = torch.randn(32, 3, 8, 8)
    compiled = compile_int8(model, x)
    assert compiled.fusion == "torchao" and compiled.int8_layers == compiled.quantized_layers == 3  # every conv
    with torch.no_grad():
        reference, kernels = model(x), compiled(x)
    assert (reference.argmax(1) == kernels.argmax(1)).float().mean().item() >= 0.95
    assert (reference - kernels).abs().max().item() <= _logit_bound(model)
