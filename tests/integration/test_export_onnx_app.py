"""--export-onnx: the float model goes through PyTorch's current exporter with a dynamic batch dimension."""
import numpy as np
import onnxruntime
import pytest
import torch

pytestmark = pytest.mark.slow


def test_export_onnx_uses_the_dynamo_exporter_with_a_dynamic_batch(run_classifier, monkeypatch, tmp_path):
    exporter_calls = []
    original_export = torch.onnx.export

    def recording_export(*args, **kwargs):
        exporter_calls.append(kwargs.get("dynamo"))
        return original_export(*args, **kwargs)
    monkeypatch.setattr(torch.onnx, "export", recording_export)
    path = tmp_path / "model.onnx"
    result = run_classifier("-a", "simplenet_cifar", "--export-onnx", path, "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert exporter_calls == [True]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        logits = session.run(None, {"input": np.zeros((batch, 3, 32, 32), dtype=np.float32)})[0]
        assert logits.shape == (batch, 10)
