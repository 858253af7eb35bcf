"""Early-exit networks in the classifier app (Distiller's --earlyexit_lossweights/--earlyexit_thresholds):
trained with the weighted loss of their exits, evaluated with entropy-based exiting, per-exit statistics and
average MACs in summary.json; misuse refused before anything is written."""
import os

import pandas as pd
import pytest

FAST = ["-a", "resnet20_cifar_earlyexit", "-b", "128", "--etrs", "0.1", "--vs", "0.1", "--etes", "0.2", "--det",
        "--seed", "1"]

pytestmark = pytest.mark.slow


def test_early_exit_training_reports_every_exit(run_classifier, tmp_path):
    result = run_classifier(*FAST, "--epochs", "2", "--earlyexit_lossweights", "0.3", "--earlyexit_thresholds",
                            "1.5", "-o", tmp_path)
    assert result.status == 0, result.stderr
    stats = result.summary["early_exit"]
    exits = stats["exits"]
    assert [e["name"] for e in exits] == ["layer1.2.relu2", "final"]
    assert sum(e["fraction"] for e in exits) == pytest.approx(1.0)
    assert exits[0]["macs"] < exits[1]["macs"] == result.summary["macs"]
    assert stats["avg_macs"] == pytest.approx(sum(e["fraction"] * e["macs"] for e in exits))
    taken = [e for e in exits if e["fraction"] > 0]
    assert result.summary["top1"] == pytest.approx(sum(e["fraction"] * e["top1"] for e in taken))
    # The per-exit results also go to CSV (and TensorBoard): one validation row per epoch, one test row.
    valid = pd.read_csv(os.path.join(result.run_dir, "earlyexit_validation.csv"))
    test = pd.read_csv(os.path.join(result.run_dir, "earlyexit_test.csv"))
    assert list(valid["epoch"]) == [0, 1] and len(test) == 1
    assert test["final_taken_pct"][0] == pytest.approx(100 * exits[1]["fraction"])
    assert test["macs_saved_pct"][0] == pytest.approx(100 * stats["macs_saved"])
    # An infinite threshold sends every sample out at the first exit.
    everything_early = run_classifier(*FAST, "--epochs", "1", "--earlyexit_lossweights", "0.3",
                                      "--earlyexit_thresholds", "inf", "-o", tmp_path)
    assert everything_early.status == 0, everything_early.stderr
    first, final = everything_early.summary["early_exit"]["exits"]
    assert (first["fraction"], final["fraction"]) == (1.0, 0.0) and final["top1"] is None
    assert everything_early.summary["early_exit"]["avg_macs"] == first["macs"]
    assert everything_early.summary["top1"] == pytest.approx(first["top1_all"])


@pytest.mark.parametrize("argv, message", [
    ([], "--earlyexit_thresholds"),
    (["--earlyexit_thresholds", "0.5"], "--earlyexit_lossweights"),
    (["--earlyexit_thresholds", "0.5", "0.5", "--earlyexit_lossweights", "0.3"], "for the 1 early exit(s)"),
    (["--earlyexit_thresholds", "0.5", "--earlyexit_lossweights", "0.7", "0.3"], "for the 1 early exit(s)"),
    (["--earlyexit_thresholds", "0.5", "--earlyexit_lossweights", "1.2"], "must sum to less than 1"),
    (["-a", "resnet20_cifar", "--earlyexit_thresholds", "0.5"], "apply to early-exit networks"),
])
def test_early_exit_misuse_is_a_user_error(run_classifier, tmp_path, argv, message):
    result = run_classifier(*FAST, "--epochs", "1", "-o", tmp_path, *argv)
    assert result.status == 2 and message in result.stderr, result.stderr
    assert result.run_dir is None
