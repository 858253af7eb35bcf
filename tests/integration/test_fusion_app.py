"""compress_classifier with the fused example schedule (filter + element-wise pruning, group lasso and
4-bit/8-bit quantization-aware training) and knowledge distillation (--kd-* flags): pruned weights are zero in
the float copies and in the quantized weights, the distillation and regularization terms are logged, and a
resumed run ends with the uninterrupted run's weights."""
import glob
import os

import pytest
import torch

from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.models import create_model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FUSED = os.path.join(ROOT, "examples", "fusion", "resnet20_digits_prune_qat.yaml")
FAST = ["-a", "resnet20_cifar", "-b", 32, "--lr", 0.1, "--det", "--etrs", 0.1, "--evs", 0.25, "--etes", 0.1,
        "-p", 2, "--compress", FUSED]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fused_runs(run_classifier, tmp_path_factory):
    """Three epochs of the fused schedule (pruning starts at epoch 1), and the same run stopped after two and
    resumed for the third."""
    out = tmp_path_factory.mktemp("fusion_runs")
    torch.manual_seed(3)
    teacher = save_checkpoint(0, "simplenet_cifar", create_model(False, "digits", "simplenet_cifar", parallel=False),
                              dir=str(out))
    fused = [*FAST, "--kd-teacher", "simplenet_cifar", "--kd-resume", teacher, "--kd-temp", 4, "--kd-start-epoch", 1]
    full = run_classifier(*fused, "--epochs", 3, "-o", out, "-n", "full")
    first = run_classifier(*fused, "--epochs", 2, "-o", out, "-n", "first")
    resumed = run_classifier(*fused, "--epochs", 3, "-o", out, "-n", "resumed",
                             "--resume-from", os.path.join(first.run_dir, "checkpoint.pth.tar"))
    for run in (full, first, resumed):
        assert run.status == 0, run.stderr
    return full, resumed


def test_pruned_weights_are_zero_in_the_float_copies_and_after_quantization(fused_runs):
    full, _ = fused_runs
    model = create_model(False, "digits", "resnet20_cifar", parallel=False)
    model, scheduler, _, _ = load_checkpoint(model, os.path.join(full.run_dir, "checkpoint.pth.tar"))
    masks = {name: masker.mask for name, masker in scheduler.zeros_mask_dict.items() if masker.mask is not None}
    assert "layer1.0.conv1.float_weight" in masks and "layer3.2.conv2.float_weight" in masks
    assert len(masks) == 3 + 12  # layer1's block conv1 (filters) and layer2/3's block convolutions (elements)
    for name, mask in masks.items():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        assert bool((mask == 0).any()), name
        assert torch.all(layer.float_weight[mask == 0] == 0) and torch.all(layer.weight[mask == 0] == 0), name
        assert layer.weight.unique().numel() <= 16, name  # 4-bit weights, one range per layer
    assert model.fc.weight.unique().numel() <= 256 and model.fc.weight.unique().numel() > 16  # 8-bit classifier
    assert full.summary["sparsity"] > 0


def test_distillation_and_regularization_terms_are_logged_beside_the_losses(fused_runs):
    full, _ = fused_runs
    log = "".join(open(path).read() for path in glob.glob(os.path.join(full.run_dir, "*.log")))
    later = log.split("Epoch: [1]", 1)[1]  # distillation starts at epoch 1
    assert "GroupLassoRegularizer_loss" in later and "Overall Loss" in later
    assert "Distillation Loss" in later and "Student Loss" in later


def test_resumed_fused_run_ends_with_the_uninterrupted_runs_weights(fused_runs):
    full, resumed = fused_runs
    expected, actual = (torch.load(os.path.join(run.run_dir, "checkpoint.pth.tar"), weights_only=True)
                        for run in (full, resumed))
    assert list(expected["state_dict"]) == list(actual["state_dict"])
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, actual["state_dict"][name]), name
    for name, mask in expected["compression_sched"]["masks_dict"].items():
        other = actual["compression_sched"]["masks_dict"][name]
        assert (mask is None and other is None) or torch.equal(mask, other), name
    assert full.summary["top1"] == resumed.summary["top1"]
