"""compress_classifier with filter-drop schedules: BatchNorm statistics fit the full network it evaluates.

Forward passes with dropped filters leave BatchNorm running statistics that describe the dropped networks
(a dropped channel's batch mean and variance are 0); the app recalibrates them on the training data
after each epoch with drops, before validating and saving the checkpoint.
"""
import copy
import os

import pytest
import torch

from distiller.apputils import load_data
from distiller.models import create_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BERNOULLI = os.path.join(ROOT, "examples", "drop_filter", "resnet20_bernoulli_drop_filter.yaml")

pytestmark = pytest.mark.slow


def full_network_statistics(model):
    """BatchNorm statistics of ``model`` (no filters dropped) over the whole digits training set."""
    reference = copy.deepcopy(model)
    train_loader, _, _, _ = load_data("digits", None, None, 128, 0, seed=0)
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(train_loader, reference)
    return {name: (m.running_mean, m.running_var) for name, m in reference.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d)}


def test_batchnorm_statistics_after_a_drop_epoch_fit_the_full_network(run_classifier, tmp_path):
    run = run_classifier("-a", "resnet20_cifar", "--epochs", 1, "-b", 32, "--lr", 0.1, "--det", "--etrs", 0.25,
                         "--evs", 0.25, "--etes", 0.1, "--compress", BERNOULLI, "-o", tmp_path, "-n", "bernoulli")
    assert run.status == 0, run.stderr
    model = create_model(False, "digits", "resnet20_cifar", parallel=False)
    checkpoint = torch.load(os.path.join(run.run_dir, "checkpoint.pth.tar"), map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    for name, (mean, var) in full_network_statistics(model).items():
        bn = model.get_submodule(name)
        ratio = bn.running_var / var
        shift = (bn.running_mean - mean).abs() / var.sqrt()
        # Without recalibration: variance ratios from 0.11 to 2.4, mean shifts up to 0.94 standard deviations.
        assert ((ratio > 0.8) & (ratio < 1.25)).all(), f"{name}: running_var / full-network var in " \
                                                       f"[{ratio.min():.3g}, {ratio.max():.3g}]"
        assert (shift < 0.1).all(), f"{name}: running_mean off by {shift.max():.3g} standard deviations"
