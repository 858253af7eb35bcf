"""ONNX export: the QDQ graph from PyTorch's current (torch.export-based) exporter, and clear errors when
the optional ONNX packages are missing."""
import logging
import sys

import onnx
import pytest
import torch

from distiller.errors import MissingDependencyError
from distiller.quantization import export_onnx_qdq
from distiller.quantization.export import OnnxRuntimeModule
from distiller.quantization.export.onnx_qdq import _quantize_dequantize_op, import_onnx_package

ACTS_U8 = {"activations": "asym_u", "weights": "sym"}


def test_quantize_dequantize_op_is_fake_quantization():
    qdq = _quantize_dequantize_op()
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3
    per_tensor = qdq(x, torch.tensor(0.05), torch.tensor(128, dtype=torch.uint8), 0)
    torch.testing.assert_close(per_tensor, torch.fake_quantize_per_tensor_affine(x, 0.05, 128, 0, 255))
    scales = torch.tensor([0.01, 0.02, 0.04, 0.08])
    per_channel = qdq(x, scales, torch.zeros(4, dtype=torch.int8), 0)
    torch.testing.assert_close(per_channel, torch.fake_quantize_per_channel_affine(
        x, scales, torch.zeros(4, dtype=torch.int32), 0, -128, 127))


@pytest.mark.parametrize("package", ["onnxscript", "onnxruntime"])
def test_missing_onnx_package_is_a_user_error_naming_the_extra(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail as if not installed
    with pytest.raises(MissingDependencyError,
                       match=rf"needs the '{package}' package.*pip install 'distiller\[onnx\]'"):
        import_onnx_package(package, "ONNX export")


def test_export_and_runtime_without_the_packages_fail_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="onnxscript"):
        export_onnx_qdq(torch.nn.Linear(2, 2), torch.zeros(1, 2), tmp_path / "model.onnx")
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        OnnxRuntimeModule(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_a_broken_install_is_not_reported_as_missing(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'onnxruntime.capi'", name="onnxruntime.capi")
    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ModuleNotFoundError) as info:
        import_onnx_package("onnxruntime", "ONNX export")
    assert not isinstance(info.value, MissingDependencyError)


@pytest.mark.slow
def test_qdq_export_with_the_dynamo_exporter_matches_the_simulated_model(quantize, test_batch, tmp_path,
                                                                         onnx_export_calls, caplog):
    _, model = quantize(mode=ACTS_U8, per_channel_wts=True)
    with caplog.at_level(logging.INFO):
        path = export_onnx_qdq(model, test_batch[:1], str(tmp_path / "model.onnx"))
    assert onnx_export_calls == [True]
    assert not [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir"))]  # no INFO flood in app logs
    assert logging.getLogger("onnxscript").level == logging.NOTSET  # and the user's logging is as it was
    exported = onnx.load(path)
    ops = [node.op_type for node in exported.graph.node]
    assert {node.domain for node in exported.graph.node} <= {"", "ai.onnx"}  # no custom op left
    assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    step = 1.0 / model.fc.output_scale.item()
    runtime = OnnxRuntimeModule(path)
    with torch.no_grad():
        for batch in (test_batch[:1], test_batch):
            simulated, output = model(batch), runtime(batch)
            assert output.shape == simulated.shape
            assert (output - simulated).abs().max().item() <= 1.01 * step
            assert (output.argmax(1) == simulated.argmax(1)).float().mean().item() >= 0.98
