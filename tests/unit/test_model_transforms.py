"""distiller.model_transforms.fold_batch_norms: BatchNorms folded into the conv/linear layers before them."""
import copy

import pytest
import torch
from torch import nn

from distiller.model_transforms import fold_batch_norms
from distiller.quantization import SimulatedFoldedBatchNorm
from distiller.summary_graph import SummaryGraph
from distiller.testing import TinyResidualNet


@pytest.fixture
def trained_like():
    """TinyResidualNet in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = TinyResidualNet().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 2)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def bn_count(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("how", ["dummy_input", "adjacency_map", "fx"])
def test_inference_folding_keeps_the_eval_function(trained_like, how):
    x = torch.randn(2, 3, 8, 8)
    expected = trained_like(x)
    model = copy.deepcopy(trained_like)
    kwargs = {"dummy_input": {"dummy_input": x}, "fx": {},
              "adjacency_map": {"adjacency_map": SummaryGraph(model, x).adjacency_map()}}[how]
    assert fold_batch_norms(model, **kwargs) is model
    assert bn_count(model) == 0 and isinstance(model.block_bn1, nn.Identity)
    assert model.conv1.bias is not None  # the BN's shift moved into a new bias
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_training_folding_wraps_layers_in_simulated_folding(trained_like):
    x = torch.randn(2, 3, 8, 8)
    expected = trained_like(x)
    model = fold_batch_norms(copy.deepcopy(trained_like), inference=False)
    assert isinstance(model.conv1, SimulatedFoldedBatchNorm) and not model.conv1.training
    assert isinstance(model.bn1, nn.Identity) and bn_count(model) == 3  # the BNs live inside the wrappers
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_a_batchnorm_with_two_producers_is_not_folded():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.bn = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.a(x) + self.b(x))

    model = fold_batch_norms(TwoInputs().eval(), dummy_input=torch.randn(1, 3, 4, 4))
    assert isinstance(model.bn, nn.BatchNorm2d)
