"""examples/auto_compression/amc/amc.py end to end on digits with a tiny model: the search runs its
episodes, writes amc.csv, amc.png, the best network (thinned, within the budget, reloadable) and the
fine-tuning command; misuse is a one-line error before anything is written."""
import csv
import json
import os
import shlex
import sys

import pytest
import torch

from distiller.amc import latency
from distiller.apputils import load_checkpoint, save_checkpoint
from distiller.models import create_model
from distiller.summaries.compute import model_macs

from .conftest import APP_DIR, app_runner_for

pytestmark = pytest.mark.slow

AMC_DIR = os.path.join(os.path.dirname(APP_DIR), "auto_compression", "amc")
FAST = ["-a", "simplenet_cifar", "-b", "64", "--vs", "0.1", "--evs", "0.5", "--det", "--seed", "1", "-j", "0"]
EXAMPLE = torch.zeros(1, 3, 32, 32)


@pytest.fixture(scope="module")
def run_amc():
    sys.path.insert(0, AMC_DIR)
    import amc
    return app_runner_for(amc)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = create_model(False, "digits", "simplenet_cifar", parallel=False)
    return save_checkpoint(0, "simplenet_cifar", model, dir=str(tmp_path_factory.mktemp("dense")))


def test_a_mac_constrained_search_saves_the_best_network_within_the_budget(run_amc, classifier_app, checkpoint,
                                                                            tmp_path):
    result = run_amc(*FAST, "--exp-load-weights-from", checkpoint, "--amc-target-density", "0.5",
                     "--amc-heatup-episodes", "2", "--amc-training-episodes", "1", "-o", tmp_path, "-n", "amc")
    assert result.status == 0, result.stderr
    with open(os.path.join(result.run_dir, "amc.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["phase"] for row in rows] == ["heatup", "heatup", "training"]
    assert all(float(row["density"]) <= 0.5 for row in rows)
    assert os.path.getsize(os.path.join(result.run_dir, "amc.png")) > 0
    with open(os.path.join(result.run_dir, "amc_summary.json")) as f:
        summary = json.load(f)
    assert summary["reward"] == max(float(row["reward"]) for row in rows)
    network = create_model(False, "digits", "simplenet_cifar", parallel=False)
    load_checkpoint(network, summary["checkpoint"])
    dense = model_macs(create_model(False, "digits", "simplenet_cifar", parallel=False), EXAMPLE)
    assert model_macs(network, EXAMPLE) == summary["macs"] <= 0.5 * dense
    command = shlex.split(summary["finetune_command"])
    assert command[1].endswith("compress_classifier.py") and summary["checkpoint"] in command
    finetune = classifier_app.get_args_parser().parse_args(command[2:])
    assert finetune.exp_load_weights_from == summary["checkpoint"] and finetune.epochs == 10


def test_a_latency_constrained_search_reports_predicted_and_measured_latency(run_amc, checkpoint, tmp_path,
                                                                           monkeypatch):
    timed = []

    def per_mac_clock(module, inputs, min_run_time=0.05):  # layers and networks cost their MACs (no noise)
        timed.append(module)
        return 1e-9 * model_macs(module, inputs[:1]) * inputs.shape[0]
    monkeypatch.setattr(latency, "measure_latency", per_mac_clock)
    argv = [*FAST, "--exp-load-weights-from", checkpoint, "--amc-protocol", "latency-constrained",
            "--amc-target-latency", "0.5", "--amc-latency-levels", "2", "--amc-latency-batch-size", "8",
            "--amc-heatup-episodes", "1", "--amc-training-episodes", "1", "-o", tmp_path]
    result = run_amc(*argv)
    assert result.status == 0, result.stderr
    with open(os.path.join(result.run_dir, "amc_summary.json")) as f:
        summary = json.load(f)
    assert summary["latency"]["predicted_seconds"] > 0 and summary["latency"]["measured_seconds"] > 0
    assert summary["cost_fraction"] <= 0.5 and summary["density"] == pytest.approx(summary["cost_fraction"])
    table = os.path.join(result.run_dir, "latency_table.json")
    with open(table) as f:
        assert json.load(f)["batch_size"] == 8
    count = len(timed)
    reused = run_amc(*argv, "--amc-latency-table", table)
    assert reused.status == 0, reused.stderr
    assert len(timed) == count  # the table was not measured again
    refused = run_amc(*argv[:-2], "--amc-target-latency", "0.01", "-o", tmp_path, "--amc-latency-table", table)
    assert refused.status == 2 and "target latency 0.01 is unreachable" in refused.stderr, refused.stderr


@pytest.mark.parametrize("argv, message", [
    ([], "pass --exp-load-weights-from"),
    (["--exp-load-weights-from", "CKPT", "--amc-protocol", "latency-constrained"], "needs --amc-target-latency"),
    (["--exp-load-weights-from", "CKPT", "--amc-heatup-episodes", "0", "--amc-training-episodes", "0"],
     "at least one episode"),
    (["--exp-load-weights-from", "CKPT", "--vs", "0"], "--validation-split must be > 0"),
    (["--exp-load-weights-from", "CKPT", "--amc-target-latency", "0.5"], "applies to --amc-protocol latency"),
    (["--exp-load-weights-from", "CKPT", "--greedy"], "--greedy does not apply to AMC"),
])
def test_misuse_is_refused_before_the_run_directory_exists(run_amc, checkpoint, tmp_path, argv, message):
    argv = [checkpoint if arg == "CKPT" else arg for arg in argv]
    result = run_amc(*FAST, "-o", tmp_path, *argv)
    assert result.status == 2 and message in result.stderr, result.stderr
    assert result.run_dir is None


def test_an_unreachable_target_is_a_user_error(run_amc, checkpoint, tmp_path):
    result = run_amc(*FAST, "--exp-load-weights-from", checkpoint, "--amc-target-density", "0.01", "-o", tmp_path)
    assert result.status == 2 and "target density 0.01 is unreachable" in result.stderr, result.stderr
