"""Checkpoints through compress_classifier.py: resuming continues the stored schedule, checkpoints that do
not fit are refused (exit status 2) unless --load-non-strict, and pruned / thinned / quantized (PTQ and
QAT) checkpoints reload with identical results."""
import os

import pytest
import torch
import yaml

from distiller.apputils import save_checkpoint
from distiller.models import create_model

pytestmark = pytest.mark.slow

FAST = ["-a", "simplenet_cifar", "-b", "32", "--etrs", "0.1", "--etes", "0.25", "--det", "--seed", "3", "-p", "2"]
# The whole test set, so that every evaluation (float, quantized, reloaded) sees the same images.
WHOLE_TEST_SET = ["--etes", "1"]
AGP = {"version": 1,
       "pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.6,
                           "weights": ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]}},
       "lr_schedulers": {"decay": {"class": "ExponentialLR", "gamma": 0.8}},
       "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 3, "frequency": 1},
                    {"lr_scheduler": {"instance_name": "decay"}, "starting_epoch": 0, "ending_epoch": 3,
                     "frequency": 1}]}
QAT = {"version": 1,
       "quantizers": {"q": {"class": "QuantAwareTrainRangeLinearQuantizer", "bits_activations": 8, "bits_weights": 4,
                            "mode": "ASYMMETRIC_UNSIGNED", "per_channel_wts": True}},
       "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 2, "frequency": 1}]}


def _checkpoint(run, name="checkpoint"):
    return os.path.join(run.run_dir, f"{name}.pth.tar")


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_user_error(result, *fragments):
    assert result.status == 2, result.stderr
    assert "Traceback" not in result.stderr and result.summary is None
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _log(run):
    with open(os.path.join(run.run_dir, os.path.basename(run.run_dir) + ".log")) as f:
        return f.read()


@pytest.fixture(scope="module")
def schedules(tmp_path_factory):
    directory = tmp_path_factory.mktemp("schedules")
    paths = {}
    for name, schedule in (("agp", AGP), ("qat", QAT)):
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(schedule))
    return paths


@pytest.fixture(scope="module")
def agp_runs(run_classifier, schedules, tmp_path_factory):
    """A 3-epoch AGP run, and the same run stopped after 2 epochs and resumed without --compress."""
    out = tmp_path_factory.mktemp("agp")
    full = run_classifier(*FAST, "--compress", schedules["agp"], "--epochs", 3, "-o", out, "-n", "full")
    first = run_classifier(*FAST, "--compress", schedules["agp"], "--epochs", 2, "-o", out, "-n", "first")
    resumed = run_classifier(*FAST, "--epochs", 3, "-o", out, "-n", "resumed", "--resume-from", _checkpoint(first))
    for run in (full, first, resumed):
        assert run.status == 0, run.stderr
    return full, first, resumed


def test_resume_without_compress_continues_agp_and_lr_like_an_uninterrupted_run(agp_runs):
    full, _, resumed = agp_runs
    for key in ("top1", "top5", "loss", "sparsity", "params_nonzero", "epochs"):
        assert resumed.summary[key] == full.summary[key], key
    expected, actual = _weights(_checkpoint(full)), _weights(_checkpoint(resumed))
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, actual["state_dict"][name]), name
    lr = actual["optimizer_state_dict"]["param_groups"][0]["lr"]
    assert lr == expected["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.8 ** 3)
    assert yaml.safe_load(actual["compression_sched"]["schedule_yaml"]) == AGP
    assert "Resumed the compression schedule stored in" in _log(resumed)


def test_resume_with_another_schedule_is_refused_naming_the_difference(run_classifier, agp_runs, tmp_path):
    _, first, _ = agp_runs
    other = yaml.safe_load(yaml.safe_dump(AGP))
    other["pruners"]["agp"]["final_sparsity"] = 0.7
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    result = run_classifier(*FAST, "--epochs", 3, "--compress", path, "-o", tmp_path, "--resume-from",
                            _checkpoint(first))
    _assert_user_error(result, "pruners.agp.final_sparsity: 0.6 in the checkpoint, 0.7 in the file",
                       "drop the schedule file (--compress)")


def test_reset_optimizer_says_the_stored_schedule_is_not_continued(run_classifier, agp_runs, tmp_path):
    _, first, _ = agp_runs
    result = run_classifier(*FAST, "--epochs", 1, "--reset-optimizer", "-o", tmp_path, "--resume-from",
                            _checkpoint(first))
    assert result.status == 0, result.stderr
    assert "the schedule stored in" in _log(result) and "is not continued" in _log(result)


@pytest.fixture(scope="module")
def other_head_checkpoint(tmp_path_factory):
    """A simplenet_cifar checkpoint whose classifier has 4 outputs instead of 10."""
    model = create_model(False, "digits", "simplenet_cifar", device_ids=-1)
    model.fc3 = torch.nn.Linear(84, 4)
    return save_checkpoint(0, "simplenet_cifar", model, dir=str(tmp_path_factory.mktemp("other_head")))


def test_evaluating_a_checkpoint_that_does_not_fit_is_refused(run_classifier, other_head_checkpoint, tmp_path):
    result = run_classifier(*FAST, "-e", "--resume-from", other_head_checkpoint, "-o", tmp_path)
    _assert_user_error(result, "does not fit 'simplenet_cifar' model", "has 2 entries of another shape",
                       "'fc3.weight': 4x84 in the checkpoint, 10x84 in the model", "--load-non-strict")
    assert os.listdir(tmp_path) == []  # refused before anything is written


def test_load_non_strict_evaluates_and_lists_what_stays_random(run_classifier, other_head_checkpoint, tmp_path):
    result = run_classifier(*FAST, "-e", "--load-non-strict", "--resume-from", other_head_checkpoint, "-o", tmp_path)
    assert result.status == 0, result.stderr
    assert "left at their initial values: 'fc3.weight', 'fc3.bias'" in _log(result)


def test_quantized_checkpoint_of_a_pruned_model_reloads(run_classifier, agp_runs, tmp_path):
    full, _, _ = agp_runs
    quantized = run_classifier(*FAST, *WHOLE_TEST_SET, "-e", "--quantize-eval", "--qe-mode", "asym_u", "-o", tmp_path,
                               "--resume-from", _checkpoint(full))
    assert quantized.status == 0, quantized.stderr
    path = quantized.summary["quantized"]["checkpoint"]
    checkpoint = _weights(path)
    assert all(mask is None for mask in checkpoint["compression_sched"]["masks_dict"].values())  # codes, not floats
    assert checkpoint["state_dict"]["conv1.wrapped_module.weight"].shape == (6, 3, 5, 5)
    reloaded = run_classifier(*FAST, *WHOLE_TEST_SET, "-e", "-o", tmp_path, "--resume-from", path)
    assert reloaded.status == 0, reloaded.stderr
    assert reloaded.summary["top1"] == quantized.summary["quantized"]["top1"]
    assert reloaded.summary["loss"] == quantized.summary["quantized"]["loss"]


def test_thinned_then_quantized_checkpoint_reloads(run_classifier, filter_pruned_checkpoint, tmp_path):
    result = run_classifier(*FAST, *WHOLE_TEST_SET, "-e", "--thinnify", "--quantize-eval", "-o", tmp_path,
                            "--resume-from", filter_pruned_checkpoint)
    assert result.status == 0, result.stderr
    path = result.summary["quantized"]["checkpoint"]
    assert [t["kind"] for t in _weights(path)["compression_sched"]["model_transforms"]] == ["thinning",
                                                                                           "quantization"]
    reloaded = run_classifier(*FAST, *WHOLE_TEST_SET, "-e", "-o", tmp_path, "--resume-from", path)
    assert reloaded.status == 0, reloaded.stderr
    assert reloaded.summary["top1"] == result.summary["quantized"]["top1"]
    assert reloaded.summary["loss"] == result.summary["quantized"]["loss"]
    assert reloaded.summary["macs"] == result.summary["macs"]  # the thinned structure


def test_thinned_model_trained_with_qat_reloads(run_classifier, filter_pruned_checkpoint, schedules, tmp_path):
    thinned = run_classifier(*FAST, "-e", "--thinnify", "-o", tmp_path, "--resume-from", filter_pruned_checkpoint)
    assert thinned.status == 0, thinned.stderr
    trained = run_classifier(*FAST, "--epochs", 1, "--compress", schedules["qat"], "-o", tmp_path,
                             "--exp-load-weights-from", _checkpoint(thinned, "thinned_checkpoint"))
    assert trained.status == 0, trained.stderr
    kinds = [t["kind"] for t in _weights(_checkpoint(trained))["compression_sched"]["model_transforms"]]
    assert kinds == ["thinning", "quantization"]
    reloaded = run_classifier(*FAST, "-e", "-o", tmp_path, "--resume-from", _checkpoint(trained))
    assert reloaded.status == 0, reloaded.stderr
    for key in ("top1", "loss", "macs"):
        assert reloaded.summary[key] == trained.summary[key], key
