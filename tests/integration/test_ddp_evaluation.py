"""Evaluation under torchrun: two gloo processes calibrate post-training quantization on their shards of the
test set and combine the statistics, so both quantize the model as one process does with the same data; the
activation statistics files (--activation-stats) rank 0 writes describe the whole test set."""
import os
import sys

import pandas as pd
import pytest
import torch
import yaml

from distiller.testing.distributed import run_in_gloo_processes

sys.path.insert(0, os.path.dirname(__file__))  # spawned processes import the worker by module name
import ddp_app_worker  # noqa: E402

pytestmark = pytest.mark.slow

TRAIN = ["-a", "simplenet_cifar", "-b", "32", "--lr", "0.05", "--epochs", "1", "--det", "--seed", "3", "-p", "1000",
         "-j", "0", "--etes", "0.3"]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A simplenet_cifar trained for one epoch on digits in one process."""
    out = tmp_path_factory.mktemp("trained")
    ddp_app_worker.train(0, 1, [*TRAIN, "-o", str(out)], str(out / "run.pt"))
    return os.path.join(torch.load(out / "run.pt", weights_only=False)["logdir"], "checkpoint.pth.tar")


@pytest.fixture(scope="module")
def evaluated(trained_checkpoint, tmp_path_factory):
    """``{'ranks': [rank 0's, rank 1's], 'single': one process's}`` results of ``-e --quantize-eval
    --activation-stats test`` with the trained checkpoint, and the ``tmp`` directory the runs wrote to."""
    tmp = tmp_path_factory.mktemp("evaluated")

    def argv(out_dir):
        # The whole test set, of which --qe-calibration 0.5 calibrates on the first 6 global batches (the last
        # one short: 360 images in batches of 32): each process sees its half of each.
        return ["-a", "simplenet_cifar", "-b", "32", "-j", "0", "-p", "1000", "-e", "--quantize-eval",
                "--qe-calibration", "0.5", "--activation-stats", "test", "--qe-compile", "--qe-export-onnx",
                "--resume-from", trained_checkpoint, "-o", str(out_dir)]
    run_in_gloo_processes(ddp_app_worker.evaluate, 2, argv(tmp / "ddp"), str(tmp / "rank{rank}.pt"))
    ddp_app_worker.evaluate(0, 1, argv(tmp / "single"), str(tmp / "one.pt"))
    return {"ranks": [torch.load(tmp / f"rank{rank}.pt", weights_only=False) for rank in range(2)],
            "single": torch.load(tmp / "one.pt", weights_only=False), "tmp": tmp}


def _stats(logdir):
    with open(os.path.join(logdir, "acts_quantization_stats.yaml")) as f:
        return yaml.safe_load(f)


def test_two_processes_calibrate_and_quantize_as_one(evaluated):
    ranks, single = evaluated["ranks"], evaluated["single"]

    # The float model, tested on both shards: the same hits, the loss summed in another order.
    assert ranks[0]["test"] == ranks[1]["test"] and ranks[0]["test"][:2] == single["test"][:2]
    torch.testing.assert_close(ranks[0]["test"][2], single["test"][2], rtol=1e-6, atol=0)
    assert single["test"][0] > 50  # trained
    # The quantized model (integer weights, the activations' scales and zero points): the same on both ranks,
    # and the one-process model's (the ranges come from the statistics' exact min and max).
    for name, value in single["state"].items():
        assert torch.equal(ranks[0]["state"][name], value) and torch.equal(ranks[1]["state"][name], value), name
    assert ranks[0]["quantized"] == ranks[1]["quantized"]
    assert ranks[0]["quantized"]["Top1"] == single["quantized"]["Top1"] > 50
    torch.testing.assert_close(ranks[0]["quantized"]["Loss"], single["quantized"]["Loss"], rtol=1e-5, atol=0)

    assert os.listdir(evaluated["tmp"] / "ddp") == [os.path.basename(ranks[0]["logdir"])]  # one run directory
    written, expected = _stats(ranks[0]["logdir"]), _stats(single["logdir"])
    assert list(written) == list(expected)
    for name, entry in expected.items():
        for where, record in [*entry["inputs"].items(), ("output", entry["output"])]:
            got = written[name]["output"] if where == "output" else written[name]["inputs"][where]
            assert (got["min"], got["max"], got["total_numel"]) == (record["min"], record["max"],
                                                                     record["total_numel"]), (name, where)
            for key in ("avg_min", "avg_max", "mean", "std", "b"):
                torch.testing.assert_close(got[key], record[key], rtol=1e-5, atol=1e-7, msg=f"{name} {where} {key}")
    assert os.path.isfile(os.path.join(ranks[0]["logdir"], "quantized_checkpoint.pth.tar"))


def test_two_processes_deploy_and_compare_over_the_whole_test_set(evaluated):
    """--qe-compile / --qe-export-onnx under torchrun: each process compiles the int8 model and evaluates its
    shard, rank 0 writes the ONNX file every process runs; scores and agreement cover the whole test set."""
    ranks, single = evaluated["ranks"], evaluated["single"]
    assert ranks[0]["deployed"] == ranks[1]["deployed"]
    for form in ("pytorch_int8", "onnxruntime"):
        assert ranks[0]["deployed"][form]["Top1"] == single["deployed"][form]["Top1"], form
    parity, expected = ranks[0]["deployed"]["parity"], single["deployed"]["parity"]
    assert parity["samples"] == expected["samples"] == 360
    for form in ("pytorch_int8", "onnxruntime", "pytorch_int8_vs_onnxruntime"):
        assert parity[form]["top1_agreement"] == pytest.approx(expected[form]["top1_agreement"], abs=1e-9), form
        assert parity[form]["max_abs_diff"] == pytest.approx(expected[form]["max_abs_diff"], rel=1e-5), form
    assert os.path.isfile(os.path.join(ranks[0]["logdir"], "quantized_qdq.onnx"))


def test_activation_statistics_files_describe_the_whole_test_set(evaluated):
    written = os.path.join(evaluated["ranks"][0]["logdir"], "activation_stats", "test")
    expected = os.path.join(evaluated["single"]["logdir"], "activation_stats", "test")
    names = ["apoz_channels.xlsx", "l1_channels.xlsx", "mean_channels.xlsx", "records.xlsx", "sparsity_ofm.xlsx"]
    assert sorted(os.listdir(written)) == sorted(os.listdir(expected)) == names
    for name in names:
        sheets, expected_sheets = (pd.read_excel(os.path.join(d, name), sheet_name=None) for d in (written, expected))
        assert list(sheets) == list(expected_sheets), name
        for sheet, frame in expected_sheets.items():
            if name == "records.xlsx":  # one row per test image, in the one-process order
                assert len(frame) == 360 and (sheets[sheet]["shape"] == frame["shape"]).all(), sheet
            pd.testing.assert_frame_equal(sheets[sheet], frame, check_exact=False, rtol=1e-5, atol=1e-6)
