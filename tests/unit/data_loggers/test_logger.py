"""Tests of the Python, TensorBoard and CSV data loggers."""
import csv
import glob
import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn

from distiller.data_loggers import (CsvLogger, PythonLogger, TensorBoardLogger, log_activation_statistics,
                                    log_model_buffers, log_training_progress, log_weights_sparsity,
                                    model_buffer_values, weights_sparsity_rows)


@pytest.fixture
def half_sparse_model():
    """conv weight 4x1x3x3 = 36 elements with 18 zeros; fc weight 2x4 dense; biases ignored."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].weight[:2] = 0.0
        model[2].weight.fill_(0.5)
        model[0].bias.zero_()
    return model


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_weights_sparsity_rows_counts_only_weights(half_sparse_model):
    rows = weights_sparsity_rows(half_sparse_model)
    assert [r["parameter"] for r in rows] == ["0.weight", "2.weight", "Total"]
    assert rows[0]["nnz"] == 18 and rows[0]["sparsity"] == pytest.approx(50.0)
    assert rows[0]["shape"] == "4x1x3x3"
    assert rows[1]["sparsity"] == 0.0
    assert rows[2]["volume"] == 44 and rows[2]["sparsity"] == pytest.approx(100 * 18 / 44)


def test_csv_logger_writes_one_row_per_call_and_widens_header(tmp_path):
    logger = CsvLogger(logdir=str(tmp_path))
    logger.log_training_progress(("Performance/Validation/", OrderedDict(Loss=0.5, Top1=90.0)), 0, 1, 1, 1)
    logger.log_training_progress(("Performance/Validation/", {"Loss": torch.tensor(0.25), "Top1": 95}), 1, 1, 1, 1)
    rows = read_csv(tmp_path / "performance_validation.csv")
    assert [(r["epoch"], r["Loss"], r["Top1"]) for r in rows] == [("0", "0.5", "90.0"), ("1", "0.25", "95")]
    logger.log_training_progress(("Performance/Validation/", {"Loss": 0.125, "LR": 0.01}), 2, 1, 1, 1)
    rows = read_csv(tmp_path / "performance_validation.csv")
    assert list(rows[0]) == ["epoch", "Loss", "Top1", "LR"]  # whole-pass records (total 1) have no step columns
    assert (rows[0]["LR"], rows[2]["Top1"], rows[2]["LR"]) == ("", "", "0.01")


def test_csv_logger_plain_dict_and_fname_prefix(tmp_path):
    logger = CsvLogger(fname_prefix="run", logdir=str(tmp_path))
    logger.log_training_progress({"Loss": 1.0}, 3, 5, 10, 5)
    rows = read_csv(tmp_path / "run_training_progress.csv")
    assert rows == [{"epoch": "3", "completed": "5", "total": "10", "Loss": "1.0"}]


def test_csv_logger_weights_sparsity_and_activations(tmp_path, half_sparse_model):
    logger = CsvLogger(logdir=str(tmp_path))
    logger.log_weights_sparsity(half_sparse_model, epoch=4)
    rows = read_csv(tmp_path / "weights_sparsity.csv")
    assert rows[0]["parameter"] == "0.weight" and float(rows[0]["sparsity"]) == 50.0
    assert {r["epoch"] for r in rows} == {"4"}
    logger.log_activation_statistic("valid", "sparsity", {"conv1": 0.5, "fc": 0.0}, 2)
    rows = read_csv(tmp_path / "activations_sparsity.csv")
    assert [(r["layer"], r["sparsity"], r["phase"]) for r in rows] == [("conv1", "0.5", "valid"),
                                                                       ("fc", "0.0", "valid")]


def test_python_logger_lines_and_tables(caplog, half_sparse_model):
    logger = PythonLogger(logging.getLogger("test_python_logger"))
    with caplog.at_level(logging.INFO, logger="test_python_logger"):
        logger.log_training_progress(("", OrderedDict(Loss=0.123456789, Steps=7)), 2, 10, 20, 10)
        logger.log_training_progress({"Top1": 99.5}, -1, 3, 3, 1)
        logger.log_weights_sparsity(half_sparse_model, 0)
    text = caplog.text
    assert "Epoch: [2][   10/   20]" in text and "Loss 0.123457" in text and "Steps 7" in text
    assert "Test: [    3/    3]" in text and "Top1 99.500000" in text
    assert "0.weight" in text and "Total sparsity: 40.91%" in text
    # Distiller's full table: structure sparsities and value statistics, and the total row
    for column in ("Cols (%)", "Rows (%)", "Ch (%)", "2D (%)", "3D (%)", "Fine (%)", "Std", "Mean", "Abs-Mean"):
        assert column in text
    assert "Total sparsity:" in text.split("Total sparsity: 40.91%")[0]


def test_python_logger_shows_the_epoch_eta_from_the_batch_time(caplog):
    logger = PythonLogger(logging.getLogger("test_python_logger_eta"))
    with caplog.at_level(logging.INFO, logger="test_python_logger_eta"):
        logger.log_training_progress(("", OrderedDict(Loss=1.0, Time=1.5)), 0, 10, 90, 10)
        logger.log_training_progress(("", OrderedDict(Loss=1.0, Time=1.5)), 0, 90, 90, 10)
        logger.log_training_progress(("", OrderedDict(Loss=1.0)), 0, 10, 90, 10)
    lines = caplog.text.splitlines()
    assert lines[0].endswith("ETA 0:02:00")  # 80 batches left at 1.5 s
    assert "ETA" not in lines[1] and "ETA" not in lines[2]  # epoch done / no batch time


def test_tensorboard_logger_writes_the_graph(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from distiller.modules import EltwiseAdd

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.add, self.fc = nn.Conv2d(2, 2, 1), EltwiseAdd(), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.add(self.conv(x), x).flatten(1))

    logger = TensorBoardLogger(str(tmp_path))
    logger.log_graph(Residual(), torch.zeros(1, 2, 2, 2))
    logger.close()
    events = event_accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    nodes = {node.name: node for node in events.Graph().node}
    assert nodes["conv"].op == "Conv2d" and list(nodes["conv"].input) == ["x"]
    add = [name for name in nodes if name.startswith("add/")]  # scoped under the EltwiseAdd module
    assert len(add) == 1 and sorted(nodes[add[0]].input) == ["conv", "x"]
    assert [d.size for d in nodes["fc"].attr["_output_shapes"].list.shape[0].dim] == [1, 3]


def test_tensorboard_logger_writes_readable_scalars_and_histograms(tmp_path, half_sparse_model):
    from tensorboard.backend.event_processing import event_accumulator
    logger = TensorBoardLogger(str(tmp_path))
    log_training_progress(("Performance/Training/", {"Loss": 2.0}), dict(half_sparse_model.named_parameters()),
                          epoch=1, steps_completed=3, total_steps=10, log_freq=1, loggers=[logger])
    log_weights_sparsity(half_sparse_model, 5, [logger])
    logger.close()
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    loss = events.Scalars("Performance/Training/Loss")
    assert [(e.step, e.value) for e in loss] == [(13, 2.0)]
    assert events.Scalars("sparsity/weights/0.weight")[0].value == pytest.approx(50.0)
    assert events.Scalars("sparsity/weights/total")[0].step == 5
    assert "0/weight" in events.Tags()["histograms"]


@pytest.fixture
def clipped_model():
    """Two modules with a ``clip_val`` buffer (as PACT layers have) and one without."""
    model = nn.Sequential(nn.ReLU(), nn.ReLU(), nn.Linear(2, 2))
    model[0].register_buffer("clip_val", torch.tensor([6.0]))
    model[1].register_buffer("clip_val", torch.tensor([2.5, 3.5]))
    return model


def test_model_buffer_values_finds_the_named_buffers(clipped_model):
    assert model_buffer_values(clipped_model, ["clip_val", "scale"]) == {
        "clip_val": [("0", [6.0]), ("1", [2.5, 3.5])], "scale": []}


def test_log_model_buffers_reaches_every_logger(clipped_model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    loggers = [PythonLogger(logging.getLogger("buffers-test")), CsvLogger(logdir=str(tmp_path))]
    log_model_buffers(clipped_model, ["clip_val"], "PACT/", 3, 5, 10, 1, loggers)
    assert "PACT/clip_val (epoch 3, step 5)" in caplog.text and "Val_1" in caplog.text and "3.5000" in caplog.text
    rows = read_csv(tmp_path / "clip_val.csv")
    assert [(r["layer"], r["val_0"], r["val_1"]) for r in rows] == [("0", "6.0", ""), ("1", "2.5", "3.5")]
    assert rows[0]["epoch"] == "3" and rows[0]["completed"] == "5"


def test_log_activation_statistics_without_a_collector_logs_nothing(tmp_path):
    logger = CsvLogger(logdir=str(tmp_path))
    log_activation_statistics(0, "valid", [logger], None)
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_logger_writes_model_buffers(tmp_path, clipped_model):
    from tensorboard.backend.event_processing import event_accumulator
    logger = TensorBoardLogger(str(tmp_path))
    log_model_buffers(clipped_model, ["clip_val"], "PACT/", 2, 3, 10, 1, [logger])
    logger.close()
    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("PACT/0/clip_val")] == [(23, 6.0)]
    assert events.Scalars("PACT/1/clip_val/1")[0].value == 3.5
