"""Knowledge distillation from the classifier app (--kd-* flags, Distiller's): the distillation loss is
trained and logged, a resumed run repeats an uninterrupted one, and misuse is a one-line error."""
import os

import pytest
import torch

from distiller.apputils import save_checkpoint
from distiller.models import create_model

FAST = ["-a", "simplenet_cifar", "-b", "64", "--etrs", "0.2", "--etes", "0.2", "--det", "--seed", "5", "-p", "2",
        "--vs", "0.1"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    teacher = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    return save_checkpoint(0, "simplenet_cifar", teacher, dir=str(tmp_path_factory.mktemp("teacher")))


def _log(run):
    with open(os.path.join(run.run_dir, os.path.basename(run.run_dir) + ".log")) as f:
        return f.read()


def test_distillation_runs_logs_its_loss_and_resumes_exactly(run_classifier, teacher_checkpoint, tmp_path):
    kd = ["--kd-teacher", "simplenet_cifar", "--kd-resume", teacher_checkpoint, "--kd-temp", "4",
          "--kd-start-epoch", "1", "-o", tmp_path]
    full = run_classifier(*FAST, *kd, "--epochs", 3, "-n", "full")
    first = run_classifier(*FAST, *kd, "--epochs", 2, "-n", "first")
    resumed = run_classifier(*FAST, *kd, "--epochs", 3, "-n", "resumed",
                             "--resume-from", os.path.join(first.run_dir, "checkpoint.pth.tar"))
    assert full.status == first.status == resumed.status == 0, (full.stderr, first.stderr, resumed.stderr)
    log = _log(full)
    epoch0 = log.split("Epoch: [1]")[0]
    assert "Distillation Loss" not in epoch0, "distillation starts at --kd-start-epoch 1"
    assert "Distillation Loss" in log.split("Epoch: [1]")[1] and "Student Loss" in log
    assert resumed.summary["top1"] == full.summary["top1"]
    assert resumed.summary["loss"] == pytest.approx(full.summary["loss"], rel=1e-6)


def test_resuming_without_the_kd_flags_is_refused(run_classifier, teacher_checkpoint, tmp_path):
    kd = ["--kd-teacher", "simplenet_cifar", "--kd-resume", teacher_checkpoint]
    first = run_classifier(*FAST, *kd, "--epochs", 1, "-o", tmp_path / "a")
    assert first.status == 0, first.stderr
    resumed = run_classifier(*FAST, "--epochs", 2, "-o", tmp_path / "b",
                             "--resume-from", os.path.join(first.run_dir, "checkpoint.pth.tar"))
    assert resumed.status == 2
    assert "'knowledge_distillation'" in resumed.stderr and "--kd-* flags" in resumed.stderr
    assert resumed.run_dir is None


@pytest.mark.parametrize("argv, message", [
    (["--kd-teacher", "simplenet_cifar", "-e"], "--kd-teacher distils while training"),
    (["--kd-resume", "x.pth.tar"], "add --kd-teacher"),
    (["--kd-teacher", "simplenet_cifar", "--kd-resume", "missing.pth.tar"], "missing.pth.tar"),
    (["--kd-teacher", "resnet20_cifar", "--kd-resume", "TEACHER"], "simplenet_cifar"),
])
def test_bad_distillation_flags_are_user_errors(run_classifier, teacher_checkpoint, tmp_path, argv, message):
    argv = [teacher_checkpoint if a == "TEACHER" else a for a in argv]
    result = run_classifier(*FAST, "--epochs", 1, "-o", tmp_path, *argv)
    assert result.status == 2 and message in result.stderr, result.stderr
    assert result.run_dir is None
