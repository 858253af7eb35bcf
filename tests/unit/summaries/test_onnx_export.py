"""export_img_classifier_to_onnx: the exported classifier outputs the model's class probabilities."""
import numpy as np
import pytest
import torch

from distiller.summaries import export_img_classifier_to_onnx


@pytest.mark.slow  # torch.export takes seconds
def test_exported_classifier_matches_softmax_of_the_model(tiny_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    tiny_model.eval()
    path = export_img_classifier_to_onnx(torch.nn.DataParallel(tiny_model), str(tmp_path / "net.onnx"), "cifar10")
    onnx.checker.check_model(onnx.load(path))
    images = torch.randn(3, 3, 32, 32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"input": images.numpy()})
    expected = torch.softmax(tiny_model(images), dim=-1).detach().numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    assert probabilities.sum(axis=1) == pytest.approx([1.0] * 3, abs=1e-5)
    logits_path = export_img_classifier_to_onnx(tiny_model, str(tmp_path / "logits.onnx"), "cifar10",
                                                add_softmax=False)
    (logits,) = onnxruntime.InferenceSession(logits_path, providers=["CPUExecutionProvider"]).run(
        None, {"input": images.numpy()})
    np.testing.assert_allclose(logits, tiny_model(images).detach().numpy(), rtol=1e-4, atol=1e-5)
