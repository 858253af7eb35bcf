"""Bad input to compress_classifier.py: a short message on stderr, exit status 2, no traceback, no training."""
import os
import subprocess
import sys

import pytest
import torch

from distiller.apputils import save_checkpoint
from distiller.models import create_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simplenet_checkpoint(tmp_path_factory):
    """An untrained simplenet_cifar checkpoint."""
    directory = tmp_path_factory.mktemp("checkpoint")
    model = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    return save_checkpoint(0, "simplenet_cifar", model, dir=str(directory))


def assert_user_error(result, *fragments):
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") <= 3, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert result.summary is None


def test_unknown_arch_lists_close_matches(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "resnet20_cifr", "-o", tmp_path), "resnet20_cifr", "'resnet20_cifar'")


def test_arch_of_another_dataset(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "simplenet_mnist", "-o", tmp_path), "simplenet_mnist", "digits")


def test_missing_dataset_dir(run_classifier, tmp_path):
    missing = tmp_path / "no_such_dir"
    assert_user_error(run_classifier("--dataset", "cifar10", missing, "-o", tmp_path), str(missing))


def test_dataset_not_inferable_from_dir_or_arch(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "my_arch", tmp_path, "-o", tmp_path), "my_arch")
    assert_user_error(run_classifier(tmp_path / "data", "-o", tmp_path), "--dataset")


def test_dataset_dir_given_for_embedded_digits(run_classifier, tmp_path):
    assert_user_error(run_classifier("--dataset", "digits", tmp_path, "-o", tmp_path), "takes no DATASET_DIR")


def test_resume_from_checkpoint_of_another_arch_names_both(run_classifier, simplenet_checkpoint, tmp_path):
    result = run_classifier("-a", "resnet20_cifar", "--resume-from", simplenet_checkpoint, "-o", tmp_path)
    assert_user_error(result, "'simplenet_cifar'", "'resnet20_cifar'")


def test_missing_schedule_file(run_classifier, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_user_error(run_classifier("-a", "simplenet_cifar", "--compress", missing, "-o", tmp_path), str(missing))


def test_schedule_error_names_the_yaml_path(run_classifier, tmp_path):
    schedule = tmp_path / "bad.yaml"
    schedule.write_text("version: 1\npruners:\n  p:\n    class: AutomatedGradualPruner\n    initial_sparsity: 0.1\n"
                        "    final_sparsity: 0.5\n    weights: [conv1.weight, conv9.weight]\n"
                        "policies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 2\n")
    result = run_classifier("-a", "simplenet_cifar", "--compress", schedule, "-o", tmp_path)
    assert_user_error(result, "bad.yaml", "conv9.weight", "pruners.p.weights[1]")


@pytest.mark.parametrize("content", [b"\x00garbage, not a checkpoint" * 10, None], ids=["corrupt", "foreign"])
def test_corrupt_or_foreign_checkpoint(run_classifier, tmp_path, content):
    path = tmp_path / "bad.pth.tar"
    if content is None:
        torch.save({"model": {"w": torch.zeros(2)}}, path)
    else:
        path.write_bytes(content)
    assert_user_error(run_classifier("--resume-from", path, "-o", tmp_path), str(path))


def test_missing_checkpoint(run_classifier, tmp_path):
    assert_user_error(run_classifier("--exp-load-weights-from", tmp_path / "none.pth.tar", "-o", tmp_path),
                      "none.pth.tar")


def test_conflicting_flags(run_classifier, tmp_path):
    assert_user_error(run_classifier("-e", "--compress", "x.yaml", "-o", tmp_path), "--compress", "--evaluate")
    assert_user_error(run_classifier("--reset-optimizer", "-o", tmp_path), "--resume-from")
    assert_user_error(run_classifier("--quantize-eval", "-o", tmp_path), "--evaluate")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_gpus_without_cuda(run_classifier, tmp_path):
    assert_user_error(run_classifier("-a", "simplenet_cifar", "--gpus", "0", "-o", tmp_path), "CUDA")


def test_verbose_shows_the_traceback(run_classifier, tmp_path):
    result = run_classifier("-a", "resnet20_cifr", "-v", "-o", tmp_path)
    assert result.status == 2 and "Traceback" in result.stderr


def test_process_exit_status_and_message(tmp_path):
    """The script itself (not only main()) exits with status 2 and a one-line message."""
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "classifier_compression",
                          "compress_classifier.py")
    process = subprocess.run([sys.executable, script, "-a", "resnet20_cifr", "-o", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1].startswith("compress_classifier.py: error: unknown architecture")
    assert "Traceback" not in process.stderr
