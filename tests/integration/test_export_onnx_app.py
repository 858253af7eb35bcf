"""--export-onnx: the float model goes through PyTorch's current exporter with a dynamic batch dimension."""
import numpy as np
import onnxruntime
import pytest

pytestmark = pytest.mark.slow


def test_export_onnx_uses_the_dynamo_exporter_with_a_dynamic_batch(run_classifier, onnx_export_calls, tmp_path):
    path = tmp_path / "model.onnx"
    result = run_classifier("-a", "simplenet_cifar", "--export-onnx", path, "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert onnx_export_calls == [True]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        logits = session.run(None, {"input": np.zeros((batch, 3, 32, 32), dtype=np.float32)})[0]
        assert logits.shape == (batch, 10)
