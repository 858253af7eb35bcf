"""The classifier application's analysis pieces: flag checks, the compute comparison, the run's plots, the
quantization entry of summary.json, the result line, and console logging under progress bars."""
import argparse
import logging
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from distiller.apputils.app_runner import progress_logging
from distiller.apputils.classifier_analysis import (check_analysis_args, compute_comparison, prunable_weights,
                                                    sensitivity_levels)
from distiller.apputils.classifier_plots import plot_epochs, plot_layer_sparsity
from distiller.apputils.classifier_reports import _work_done, quantization_summary
from distiller.cli import ArgumentParser, add_analysis_args
from distiller.errors import ArgumentError, MissingDependencyError
from distiller.summaries import weights_sparsity_summary
from distiller.testing import TinyCNN


def parse(*argv):
    parser = ArgumentParser()
    add_analysis_args(parser)
    return parser.parse_args([str(a) for a in argv])


def test_analysis_flags_keep_distillers_names_and_defaults():
    args = parse("--summary", "Compute", "--summary", "png", "--masks-sparsity", "--param-hist")
    assert args.summary == ["compute", "png"] and args.masks_sparsity and args.param_hist
    args = parse("--sense", "filter", "--sense-range", 0.1, 0.5, 0.2)
    assert (args.sensitivity, args.sensitivity_range) == ("filter", [0.1, 0.5, 0.2])
    assert np.allclose(sensitivity_levels(args), [0.1, 0.3])
    assert np.allclose(sensitivity_levels(parse("--sense", "element")), np.arange(0.0, 0.95, 0.05))


@pytest.mark.parametrize("sense_range, message", [((0.5, 0.1, 0.1), "needs START < STOP and STEP > 0"),
                                                  ((0.0, 0.5, 0.0), "needs START < STOP and STEP > 0"),
                                                  ((0.5, 1.5, 0.25), r"levels 0.5..1.25 must lie in \[0, 1\]")])
def test_bad_sense_ranges_are_argument_errors(sense_range, message):
    with pytest.raises(ArgumentError, match=message):
        check_analysis_args(parse("--sense", "element", "--sense-range", *sense_range), TinyCNN())


def test_sense_on_a_model_without_prunable_weights_is_an_argument_error():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    assert prunable_weights(model) == []
    with pytest.raises(ArgumentError, match="--sense channel: Sequential has no linear or convolution weight"):
        check_analysis_args(parse("--sense", "channel"), model)
    assert prunable_weights(TinyCNN()) == ["conv1.weight", "conv2.weight", "fc.weight"]


def test_summary_png_needs_graphviz_and_summary_excludes_sense(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot there
    with pytest.raises(MissingDependencyError, match="Graphviz's 'dot' program"):
        check_analysis_args(parse("--summary", "png_w_params"), TinyCNN())
    check_analysis_args(parse("--summary", "compute"), TinyCNN())  # no drawing: no Graphviz needed
    with pytest.raises(ArgumentError, match="--summary and --sense"):
        check_analysis_args(parse("--summary", "model", "--sense", "filter"), TinyCNN())


def test_compute_comparison_counts_thinned_layers_and_the_macs_of_non_zero_weights():
    start = pd.DataFrame({"Name": ["conv", "fc"], "Type": ["Conv2d", "Linear"], "MACs": [1000, 100],
                          "Density": [1.0, 1.0]})
    now = pd.DataFrame({"Name": ["conv", "fc"], "Type": ["Conv2d", "Linear"], "MACs": [500, 100],
                        "Density": [0.5, 0.25]})
    table = compute_comparison(start, now)
    assert list(table["Name"]) == ["conv", "fc", "Total"]
    assert list(table["MACs (start)"]) == [1000, 100, 1100] and list(table["MACs (now)"]) == [500, 100, 600]
    assert list(table["Sparse MACs (now)"]) == [250, 25, 275]
    assert table["Sparse/start (%)"].tolist() == pytest.approx([25.0, 25.0, 25.0])


def test_run_plots_are_pngs(tmp_path):
    epochs = pd.DataFrame({"epoch": [0, 1, 2], "train_top1": [50, 70, 80], "valid_top1": [45, 65, 78],
                           "sparsity": [0, 30, 60]})
    image = imread(plot_epochs(epochs, str(tmp_path / "epochs.png")))
    assert image.shape[:2] == (400, 1000)
    model = TinyCNN()
    with torch.no_grad():
        model.conv1.weight[:4] = 0
    path = plot_layer_sparsity(weights_sparsity_summary(model), str(tmp_path / "layers.png"))
    assert imread(path).shape[0] == int(100 * (1.5 + 0.3 * 3))  # one bar pair per weight, no total row


def test_quantization_summary_is_flat():
    results = {"quantized": {"Top1": 91.0, "Top5": 99.0, "Loss": 0.3}, "checkpoint": "q.pth.tar",
               "pytorch_int8": {"Top1": 90.5}, "parity": {"samples": 10}}
    assert quantization_summary(results) == {"top1": 91.0, "top5": 99.0, "loss": 0.3, "checkpoint": "q.pth.tar",
                                             "pytorch_int8": {"Top1": 90.5}, "parity": {"samples": 10}}


def test_result_line_tells_evaluation_from_training():
    assert _work_done({"epochs": 5, "epochs_run": 0, "wall_seconds": 3.2}) == \
        "evaluation of a model trained 5 epochs, in 3 s"
    assert _work_done({"epochs": 5, "epochs_run": 2, "wall_seconds": 10}) == "2 epochs in 10 s"


def test_progress_logging_keeps_the_console_level(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    root.handlers[:] = [console]
    root.setLevel(logging.DEBUG)
    try:
        with progress_logging():
            logging.getLogger("test_progress").debug("a debug line")
            logging.getLogger("test_progress").info("an info line")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr()
    assert "an info line" in out.out + out.err and "a debug line" not in out.out + out.err


def test_parsed_flags_are_plain_data():
    assert isinstance(parse(), argparse.Namespace) and parse().summary is None and parse().sensitivity is None


def test_layer_macs_sum_the_calls_of_a_shared_layer():
    from distiller.apputils.classifier_analysis import _layer_macs

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    with torch.no_grad():
        model.conv.weight[0] = 0
    table = compute_comparison(_layer_macs(model, torch.zeros(1, 2, 4, 4)), _layer_macs(model, torch.zeros(1, 2, 4, 4)))
    assert table.values[:, :5].tolist() == [["conv", "Conv2d", 128, 128, 64], ["Total", "", 128, 128, 64]]
