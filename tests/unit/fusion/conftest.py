"""A fused schedule on TinyCNN: element-wise AGP on conv2, L1 filter AGP on conv1, an L1 regularizer on fc,
range-linear quantization-aware training (4-bit weights per tensor, 8-bit activations) and an LR schedule."""
import pytest
import torch

from distiller.testing import TinyCNN

BITS_WEIGHTS = 4
L1_STRENGTH = 1e-3


def _fused_schedule(order=("conv1_filters", "conv2_elements", "fc_l1", "qat", "lr"), quantizer=None):
    kinds = {"conv1_filters": "pruner", "conv2_elements": "pruner", "fc_l1": "regularizer", "qat": "quantizer",
             "lr": "lr_scheduler"}
    return {
        "pruners": {
            "conv1_filters": {"class": "L1RankedStructureParameterPruner_AGP", "initial_sparsity": 0.25,
                              "final_sparsity": 0.5, "group_type": "Filters", "weights": ["conv1.weight"]},
            "conv2_elements": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.3, "final_sparsity": 0.6,
                               "weights": ["conv2.weight"]}},
        "regularizers": {"fc_l1": {"class": "L1Regularizer", "reg_regims": {"fc.weight": L1_STRENGTH}}},
        "quantizers": {"qat": quantizer or {
            "class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8, "bits_weights": BITS_WEIGHTS,
            "bits_bias": 32, "mode": "ASYMMETRIC_UNSIGNED", "per_channel_wts": False}},
        "lr_schedulers": {"lr": {"class": "StepLR", "step_size": 1, "gamma": 0.5}},
        "policies": [{kinds[name]: {"instance_name": name}, "starting_epoch": 0, "ending_epoch": 2} for name in order],
    }


def _model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = TinyCNN()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)


@pytest.fixture
def fused_schedule():
    """``fused_schedule(order=..., quantizer=...)``: the schedule dict, its policies in ``order`` (instance
    names); ``quantizer`` replaces the QAT instance."""
    return _fused_schedule


@pytest.fixture
def model_and_optimizer():
    """``model_and_optimizer(seed=0)``: a seeded TinyCNN and its SGD optimizer (momentum, weight decay)."""
    return _model_and_optimizer


@pytest.fixture
def fusion_batches():
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(3)]
