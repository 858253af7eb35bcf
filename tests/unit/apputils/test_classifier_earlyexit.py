"""Early exits in the classifier engine: the weighted loss, the entropy-based exit choice with its per-exit
statistics and average MACs, the MACs up to each exit, and the checks of the --earlyexit_* flags."""
import argparse

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from distiller.apputils.classifier_earlyexit import (EarlyExitLoss, EarlyExitSetup, check_earlyexit_flags,
                                                     earlyexit_setup, evaluate_earlyexit, exit_macs,
                                                     softmax_entropy)
from distiller.errors import ArgumentError
from distiller.models import create_model
from distiller.summaries.compute import model_performance_summary


def _args(**kwargs):
    values = dict(earlyexit_thresholds=None, earlyexit_lossweights=None, evaluate=False, kd_teacher=None,
                  greedy=False, thinnify=False, quantize_eval=False, export_onnx=None, activation_histograms=None)
    return argparse.Namespace(**{**values, **kwargs})


def test_loss_is_the_weighted_sum_of_the_exits_cross_entropies():
    torch.manual_seed(0)
    outputs, target = [torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)], torch.tensor([0, 1, 2, 1])
    expected = (0.2 * F.cross_entropy(outputs[0], target) + 0.3 * F.cross_entropy(outputs[1], target)
                + 0.5 * F.cross_entropy(outputs[2], target))
    torch.testing.assert_close(EarlyExitLoss([0.2, 0.3])(outputs, target), expected)


class FixedExits(nn.Module):
    """Returns the exit and final logits stored for each sample (the input holds the sample's index)."""

    def __init__(self, exit_logits, final_logits):
        super().__init__()
        self.register_buffer("exit_logits", exit_logits)
        self.register_buffer("final_logits", final_logits)

    def forward(self, index):
        return [self.exit_logits[index], self.final_logits[index]]


def test_samples_leave_at_the_first_confident_exit():
    confident, unsure = torch.tensor([10.0, 0.0]), torch.tensor([0.1, 0.0])
    # samples 0-2 are confident at the exit (0 and 1 right, 2 wrong); sample 3 is not and goes on (right).
    exit_logits = torch.stack([confident, confident, confident, unsure])
    final_logits = torch.tensor([[0.0, 5.0], [5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    target = torch.tensor([0, 0, 1, 1])
    setup = EarlyExitSetup(["exit", "final"], [0.1], [10, 100])
    results = evaluate_earlyexit(FixedExits(exit_logits, final_logits), EarlyExitLoss([0.5]),
                                 [(torch.arange(2), target[:2]), (torch.arange(2, 4), target[2:])], setup)
    exit_stats, final_stats = results["exits"]
    assert (exit_stats["fraction"], final_stats["fraction"]) == (0.75, 0.25)
    assert exit_stats["top1"] == pytest.approx(200 / 3) and final_stats["top1"] == 100.0
    assert (exit_stats["top1_all"], final_stats["top1_all"]) == (50.0, 50.0)
    assert results["Top1"] == 75.0
    assert results["avg_macs"] == pytest.approx(0.75 * 10 + 0.25 * 100)
    assert results["macs_saved"] == pytest.approx(1 - 32.5 / 100)


def test_softmax_entropy():
    assert softmax_entropy(torch.zeros(1, 4)).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert softmax_entropy(torch.tensor([[100.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_exit_macs_of_resnet20_cifar_earlyexit():
    dummy = torch.zeros(1, 3, 32, 32)
    plain = model_performance_summary(create_model(False, "cifar10", "resnet20_cifar", parallel=False), dummy)
    model = create_model(False, "cifar10", "resnet20_cifar_earlyexit", parallel=False)
    branch = 16 * 10 * 10 * 10  # the exit's linear layer: 16x10x10 pooled features -> 10 classes
    stem_and_layer1 = int(plain[~plain["Name"].str.match(r"layer[23]|fc")]["MACs"].sum())
    assert exit_macs(model, dummy) == [stem_and_layer1 + branch, int(plain["MACs"].sum()) + branch]


@pytest.mark.parametrize("kwargs, message", [
    (dict(earlyexit_thresholds=[0.5, 0.5], earlyexit_lossweights=[0.3]), r"2 value\(s\) for the 1 early exit"),
    (dict(earlyexit_thresholds=[0.5], earlyexit_lossweights=[0.6, 0.1]), r"2 value\(s\) for the 1 early exit"),
    (dict(earlyexit_thresholds=[0.5], earlyexit_lossweights=[1.0]), "sum to 1"),
    (dict(earlyexit_thresholds=[-0.5], earlyexit_lossweights=[0.3]), "negative"),
])
def test_setup_refuses_values_that_do_not_fit_the_exits(kwargs, message):
    model = create_model(False, "cifar10", "resnet20_cifar_earlyexit", parallel=False)
    with pytest.raises(ArgumentError, match=message):
        earlyexit_setup(_args(**kwargs), model, torch.zeros(1, 3, 32, 32))


def test_setup_of_a_network_without_exits_is_none():
    model = create_model(False, "cifar10", "resnet20_cifar", parallel=False)
    assert earlyexit_setup(_args(), model, torch.zeros(1, 3, 32, 32)) is None


@pytest.mark.parametrize("arch, kwargs, message", [
    ("resnet20_cifar", dict(earlyexit_thresholds=[0.5]), "apply to early-exit networks"),
    ("resnet20_cifar_earlyexit", dict(earlyexit_lossweights=[0.3]), "--earlyexit_thresholds"),
    ("resnet20_cifar_earlyexit", dict(earlyexit_thresholds=[0.5]), "--earlyexit_lossweights"),
    ("resnet20_cifar_earlyexit", dict(earlyexit_thresholds=[0.5], earlyexit_lossweights=[0.3], greedy=True),
     "--greedy does not handle early-exit networks"),
])
def test_flags_are_checked_against_the_arch(arch, kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        check_earlyexit_flags(_args(**kwargs), arch)


def test_evaluation_needs_no_loss_weights():
    check_earlyexit_flags(_args(earlyexit_thresholds=[0.5], evaluate=True), "resnet20_cifar_earlyexit")
