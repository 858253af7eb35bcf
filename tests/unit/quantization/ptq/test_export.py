"""Integer deployment: the PT2E lowering, ONNX QDQ export, parity check, unsupported layers."""
import logging

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.modules import Matmul
from distiller.quantization import ExportError, convert_distiller_ptq_model_to_pytorch, export_onnx_qdq, parity_check
from distiller.quantization.export import format_parity
from distiller.quantization.export.pt2e import build_pt2e_model

_QD = torch.ops.quantized_decomposed

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}


def test_pt2e_lowering_keeps_pools_on_the_grid_and_fuses_relu(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8)
    lowered = build_pt2e_model(model)
    quantizes = [n for n in lowered.graph.nodes if n.target is _QD.quantize_per_tensor.default]
    pool = next(n for n in lowered.graph.nodes if n.op == "call_module" and n.target == "pool")
    (after_pool,) = [u for u in pool.users if u.target is _QD.quantize_per_tensor.default][:1]
    assert after_pool.args[1:3] == pool.args[0].args[1:3]  # max-pool keeps its input's scale and zero point
    assert quantizes[0].args[0].op == "placeholder"  # the input is quantized once, first
    relus = [n for n in lowered.graph.nodes if n.target is torch.nn.functional.relu]
    assert not relus  # asymmetric ranges start at 0: the clamp of the quantization is the ReLU


@pytest.mark.slow  # the ONNX export takes seconds (torch.export)
def test_onnx_qdq_export_runs_in_onnxruntime_and_matches(quantize, test_batch, tmp_path):
    import onnxruntime
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    path = export_onnx_qdq(model, test_batch[:1], str(tmp_path / "model.onnx"))
    exported = onnx.load(path)
    onnx.checker.check_model(exported)
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in exported.graph.initializer}
    assert initializers["conv1.weight_quantized"].dtype == np.int8
    assert any(v.dtype == np.int32 for v in initializers.values())  # biases at the accumulator scale
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    output = session.run(None, {"input": test_batch.numpy()})[0]
    with torch.no_grad():
        simulated = model(test_batch).numpy()
    assert np.abs(output - simulated).max() <= 1.01 / model.fc.output_scale.item()
    fused = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "QLinearConv" in fused and "QLinearAdd" in fused  # ONNX Runtime runs integer kernels
    assert fused.count("QLinearConv") == 5 and "Conv" not in fused and "FusedConv" not in fused  # every conv


@pytest.mark.slow  # the ONNX export takes seconds (torch.export)
def test_onnx_export_warns_when_symmetric_ranges_keep_relus_out_of_integer_kernels(quantize, test_batch, tmp_path,
                                                                                   caplog):
    """Symmetric activations (the defaults) put a ReLU's output at zero point 128, so the exported ReLU is explicit
    and ONNX Runtime runs those convolutions in float: the export says so and names the fix."""
    _, model = quantize(per_channel_wts=True)  # symmetric activations
    with caplog.at_level(logging.WARNING, logger="distiller.quantization.export.onnx_qdq"):
        export_onnx_qdq(model, test_batch[:1], str(tmp_path / "model.onnx"))
    (warning,) = [r.getMessage() for r in caplog.records if "apply their ReLU explicitly" in r.getMessage()]
    assert "asym_u" in warning
    assert warning.startswith("4 ")  # conv1, block.conv1, the two branches; block.conv2's ReLU follows the add


@pytest.mark.slow  # the ONNX export takes seconds (torch.export)
def test_parity_check_reports_agreement(quantize, test_batch, tmp_path):
    _, model = quantize(mode=ACTS_U8)
    lowered = build_pt2e_model(model)  # computes what the compiled int8 model computes (same q/dq graph)
    path = export_onnx_qdq(model, test_batch[:1], str(tmp_path / "model.onnx"))
    report = parity_check(model, [(test_batch[:32], None), (test_batch[32:], None)], lowered, path)
    assert report["samples"] == 64
    for form in ("pytorch_int8", "onnxruntime", "pytorch_int8_vs_onnxruntime"):
        assert report[form]["top1_agreement"] >= 0.98 and report[form]["max_abs_diff"] < 0.1
    table = format_parity(report).splitlines()
    assert "64 samples" in table[0] and len(table) == 5
    assert table[4].split()[:7] == ["compiled", "int8", "(PyTorch)", "ONNX", "Runtime", "QDQ",
                                    f"{100 * report['pytorch_int8_vs_onnxruntime']['top1_agreement']:.2f}%"]
    with pytest.raises(ValueError, match="converted_model"):
        parity_check(model, [test_batch])


def test_conversion_errors_name_the_layer(float_model, quantize, test_batch):
    """Distiller's entry point routes to the new lowering: its errors name the layer and the setting."""
    _, dynamic = quantize(model_activation_stats=None)
    with pytest.deprecated_call(match="call compile_int8 instead"):
        with pytest.raises(ExportError, match="'conv1' uses dynamic"):
            convert_distiller_ptq_model_to_pytorch(dynamic, test_batch[:1])
    _, four_bit = quantize(overrides={"block.conv1": {"bits_weights": 4}})
    with pytest.deprecated_call(), pytest.raises(ExportError, match="'block.conv1' uses 4-bit weights"):
        convert_distiller_ptq_model_to_pytorch(four_bit, test_batch[:1])
    _, asymmetric = quantize(mode="asym_u")
    with pytest.raises(ExportError, match="ASYMMETRIC_UNSIGNED weights"):
        build_pt2e_model(asymmetric)
    with pytest.raises(ArgumentError, match="argument 'backend' expects 'x86' or 'fbgemm' or 'qnnpack' or 'onednn', "
                                            "got 'tpu'"):
        convert_distiller_ptq_model_to_pytorch(asymmetric, test_batch[:1], backend="tpu")
    with pytest.deprecated_call(), pytest.raises(ExportError, match="backend .qnnpack. ran on torch.ao.s deprecated"):
        convert_distiller_ptq_model_to_pytorch(asymmetric, test_batch[:1], backend="qnnpack")


def test_quantized_matmul_lowers_to_a_float_matmul_between_quantize_steps():
    """Attention's matmul of two activations has no int8 kernel: it runs in float on the dequantized inputs and
    its output is quantized with the simulated parameters (as convert_pt2e leaves such operations)."""
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)
            self.matmul = Matmul()

        def forward(self, x):
            return self.matmul(self.q(x), self.k(x).transpose(1, 2))

    torch.manual_seed(0)
    model, x = Attention().eval(), torch.randn(2, 3, 4)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=ACTS_U8).prepare_model()
    lowered = build_pt2e_model(model)
    matmul = next(node for node in lowered.graph.nodes if node.target is torch.matmul)
    assert all(arg.target is _QD.dequantize_per_tensor.default for arg in matmul.args)
    (quantize,) = matmul.users
    assert quantize.args[1] == pytest.approx(1 / model.matmul.output_scale.item())
    with torch.no_grad():
        assert (model(x) - lowered(x)).abs().max().item() <= 1.01 / model.matmul.output_scale.item()


def test_inputs_with_their_own_8_bit_parameters_are_exported(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8, overrides={"fc": {"input_overrides": {0: {"clip_acts": "AVG"}}},
                                                 "avgpool": {"quantize_inputs": True}})
    converted = build_pt2e_model(model)
    with torch.no_grad():
        simulated, integer = model(test_batch), converted(test_batch)
    assert (simulated - integer).abs().max().item() <= 2.01 / model.fc.output_scale.item()
    _, four_bit = quantize(mode=ACTS_U8, overrides={"fc": {"input_overrides": {0: {"bits_activations": 4}}}})
    with pytest.raises(ExportError, match=r"'fc' quantizes input\(s\) \[0\] with other bits or mode"):
        build_pt2e_model(four_bit)


def test_a_float_layer_quantizing_the_model_input_is_exported(tanh_stem):
    from distiller.quantization import PostTrainLinearQuantizer

    model, stats, x = tanh_stem
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=ACTS_U8,
                             overrides={"tanh": {"quantize_inputs": True}}).prepare_model(x[:1])
    converted = build_pt2e_model(model)
    with torch.no_grad():
        simulated, integer = model(x), converted(x)
    quantized = [n.args[0] for n in converted.graph.nodes if n.target is _QD.quantize_per_tensor.default]
    assert [n.target for n in quantized[:2]] == ["x", "tanh"]  # the model's input, then tanh's output
    assert (simulated - integer).abs().max().item() <= 1.01 / model.fc.output_scale.item()
