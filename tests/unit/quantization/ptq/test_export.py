"""Integer deployment: PyTorch int8 conversion, ONNX QDQ export, parity check, unsupported layers."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.quantization import ExportError, convert_distiller_ptq_model_to_pytorch, export_onnx_qdq, parity_check

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}
_BACKENDS = [b for b in ("x86", "qnnpack") if b in torch.backends.quantized.supported_engines]


@pytest.fixture(autouse=True)
def restore_engine():
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


@pytest.mark.parametrize("backend", _BACKENDS)
@pytest.mark.parametrize("mode", [ACTS_U8, "sym"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_pytorch_int8_matches_the_simulated_model(quantize, test_batch, backend, mode, per_channel):
    _, model = quantize(mode=mode, per_channel_wts=per_channel)
    converted = convert_distiller_ptq_model_to_pytorch(model, test_batch[:1], backend=backend)
    code = converted.code
    assert "torch.ops.quantized.add_relu" in code and "torch.ops.quantized.cat" in code
    with torch.no_grad():
        simulated, integer = model(test_batch), converted(test_batch)
    assert (simulated.argmax(1) == integer.argmax(1)).float().mean().item() >= 0.98
    # same integers up to rare rounding ties of float requantization: at most one output step
    assert (simulated - integer).abs().max().item() <= 1.01 / model.fc.output_scale.item()


def test_pytorch_int8_fuses_relu_and_keeps_pools_quantized(quantize, test_batch):
    _, model = quantize(mode=ACTS_U8)
    converted = convert_distiller_ptq_model_to_pytorch(model, test_batch[:1])
    kinds = {name: type(module).__name__ for name, module in converted.named_modules()}
    assert kinds["conv1"] == "ConvReLU2d" and kinds["block.conv2"] == "Conv2d" and kinds["fc"] == "Linear"
    assert kinds["branch_a"] == "ConvReLU2d"  # functional ReLU fused too
    assert converted.code.count("torch.quantize_per_tensor(") == 1  # quantized once at the input
    assert converted.code.count(".dequantize()") == 1


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


@pytest.mark.slow  # the ONNX export takes seconds (torch.export)
def test_parity_check_reports_agreement(quantize, test_batch, tmp_path):
    _, model = quantize(mode=ACTS_U8)
    converted = convert_distiller_ptq_model_to_pytorch(model, test_batch[:1])
    path = export_onnx_qdq(model, test_batch[:1], str(tmp_path / "model.onnx"))
    report = parity_check(model, [(test_batch[:32], None), (test_batch[32:], None)], converted, path)
    assert report["samples"] == 64
    for form in ("pytorch_int8", "onnxruntime"):
        assert report[form]["top1_agreement"] >= 0.98 and report[form]["max_abs_diff"] < 0.1
    with pytest.raises(ValueError, match="converted_model"):
        parity_check(model, [test_batch])


def test_conversion_errors_name_the_layer(float_model, quantize, test_batch):
    _, dynamic = quantize(model_activation_stats=None)
    with pytest.raises(ExportError, match="'conv1' uses dynamic"):
        convert_distiller_ptq_model_to_pytorch(dynamic, test_batch[:1])
    _, four_bit = quantize(overrides={"block.conv1": {"bits_weights": 4}})
    with pytest.raises(ExportError, match="'block.conv1' uses 4-bit weights"):
        convert_distiller_ptq_model_to_pytorch(four_bit, test_batch[:1])
    _, asymmetric = quantize(mode="asym_u")
    with pytest.raises(ExportError, match="ASYMMETRIC_UNSIGNED weights"):
        convert_distiller_ptq_model_to_pytorch(asymmetric, test_batch[:1])
    with pytest.raises(ArgumentError, match="argument 'backend' expects 'x86' or 'fbgemm' or 'qnnpack' or 'onednn', "
                                            "got 'tpu'"):
        convert_distiller_ptq_model_to_pytorch(asymmetric, test_batch[:1], backend="tpu")


def test_layer_without_integer_kernel_is_an_error():
    from distiller.data_loggers import collect_quant_stats
    from distiller.quantization import PostTrainLinearQuantizer

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return torch.matmul(self.q(x), self.k(x).transpose(1, 2))

    torch.manual_seed(0)
    model, x = Attention().eval(), torch.randn(2, 3, 4)
    stats = collect_quant_stats(model, lambda m: m(x))
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=ACTS_U8).prepare_model()
    with pytest.raises(ExportError, match="'matmul' \\(RangeLinearQuantMatmulWrapper\\) has no integer kernel"):
        convert_distiller_ptq_model_to_pytorch(model, x)


def test_the_int8_model_runs_under_strict_deterministic_algorithms(quantize, test_batch, recwarn):
    """--det turns on strict mode, which refuses torch.ao's output resize; the int8 model still runs, the
    setting is restored after each call, and no warning is emitted for it."""
    _, model = quantize(mode=ACTS_U8)
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        int8 = convert_distiller_ptq_model_to_pytorch(model, test_batch[:1])
        with torch.no_grad():
            first, second = int8(test_batch), int8(test_batch)
        assert torch.equal(first, second)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    assert not [w for w in recwarn if "deterministic" in str(w.message)]


@pytest.mark.parametrize("backend", _BACKENDS[:1])
def test_inputs_with_their_own_8_bit_parameters_are_exported(quantize, test_batch, backend):
    _, model = quantize(mode=ACTS_U8, overrides={"fc": {"input_overrides": {0: {"clip_acts": "AVG"}}},
                                                 "avgpool": {"quantize_inputs": True}})
    converted = convert_distiller_ptq_model_to_pytorch(model, test_batch[:1], backend=backend)
    with torch.no_grad():
        simulated, integer = model(test_batch), converted(test_batch)
    assert (simulated - integer).abs().max().item() <= 1.01 / model.fc.output_scale.item()
    _, four_bit = quantize(mode=ACTS_U8, overrides={"fc": {"input_overrides": {0: {"bits_activations": 4}}}})
    with pytest.raises(ExportError, match=r"'fc' quantizes input\(s\) \[0\] with other bits or mode"):
        convert_distiller_ptq_model_to_pytorch(four_bit, test_batch[:1], backend=backend)


@pytest.mark.parametrize("backend", _BACKENDS[:1])
def test_a_float_layer_quantizing_the_model_input_is_exported(tanh_stem, backend):
    from distiller.quantization import PostTrainLinearQuantizer

    model, stats, x = tanh_stem
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode=ACTS_U8,
                             overrides={"tanh": {"quantize_inputs": True}}).prepare_model(x[:1])
    converted = convert_distiller_ptq_model_to_pytorch(model, x[:1], backend=backend)
    with torch.no_grad():
        simulated, integer = model(x), converted(x)
    assert converted.code.count("torch.quantize_per_tensor(") == 2  # the model's input, then tanh's output
    assert (simulated - integer).abs().max().item() <= 1.01 / model.fc.output_scale.item()
