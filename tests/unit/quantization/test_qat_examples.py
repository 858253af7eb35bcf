"""The QAT example schedules build on resnet20_cifar and quantize what their headers promise."""
import glob
import os

import pytest
import torch

import distiller
from distiller.models import create_model

EXAMPLES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "quantization",
                                         "quant_aware_train", "*.yaml")))


def test_examples_exist():
    assert {os.path.basename(p) for p in EXAMPLES} >= {
        "resnet20_digits_dorefa_w4a8.yaml", "resnet20_digits_pact_w4a8.yaml", "resnet20_digits_range_linear_w4a8.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_builds_and_quantizes_w4a8(path):
    torch.manual_seed(0)
    model = create_model(False, "digits", "resnet20_cifar", parallel=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = distiller.file_config(model, optimizer, path)
    assert scheduler.model_transforms[0]["kind"] == "quantization"
    def levels(weight):  # per output channel: the range-linear example quantizes per channel
        return max(row.unique().numel() for row in weight)

    assert levels(model.layer2[1].conv1.weight) <= 16  # 4-bit weights in the residual blocks
    assert 16 < levels(model.conv1.weight) <= 256  # 8-bit stem
    activations = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ("relu", "relu1", "relu2")]
    assert len(activations) == 19 and not any(type(m) is torch.nn.ReLU for m in activations)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
