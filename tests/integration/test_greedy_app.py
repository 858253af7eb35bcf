"""Greedy filter pruning from the classifier app (Distiller's --greedy flags): the network shrinks to the
target share of its MACs, each step is saved and described in greedy.csv, misuse is a one-line error."""
import csv
import glob
import os

import pytest
import torch

from distiller.apputils import load_checkpoint
from distiller.models import create_model
from distiller.summaries.compute import model_macs

FAST = ["-a", "simplenet_cifar", "-b", "128", "--etrs", "0.1", "--vs", "0.1", "--etes", "0.2", "--det", "--seed", "1"]

pytestmark = pytest.mark.slow


def test_greedy_pruning_reaches_the_target_and_saves_every_step(run_classifier, tmp_path):
    result = run_classifier(*FAST, "--greedy", "--greedy-target-density", "0.6", "--greedy-pruning-step", "0.3",
                            "--greedy-ft-epochs", "1", "-o", tmp_path)
    assert result.status == 0, result.stderr
    dense = model_macs(create_model(False, "digits", "simplenet_cifar", parallel=False), torch.zeros(1, 3, 32, 32))
    assert result.summary["macs"] <= 0.6 * dense
    with open(os.path.join(result.run_dir, "greedy.csv")) as f:
        rows = list(csv.DictReader(f))
    checkpoints = sorted(glob.glob(os.path.join(result.run_dir, "greedy__*.pth.tar")))
    assert len(rows) == len(checkpoints) >= 2
    last = create_model(False, "digits", "simplenet_cifar", parallel=False)
    load_checkpoint(last, checkpoints[-1])
    assert model_macs(last, torch.zeros(1, 3, 32, 32)) == result.summary["macs"]


@pytest.mark.parametrize("argv, message", [
    (["--greedy"], "--greedy needs --greedy-target-density"),
    (["--greedy", "--greedy-target-density", "0.5", "-e"], "drop --evaluate and --compress"),
])
def test_greedy_misuse_is_a_user_error(run_classifier, tmp_path, argv, message):
    result = run_classifier(*FAST, "-o", tmp_path, *argv)
    assert result.status == 2 and message in result.stderr, result.stderr
    assert result.run_dir is None
