"""What compress_classifier.py shows about a model on the digits dataset: --summary, --sense, --masks-sparsity,
--param-hist, the closing compute table and plots of a compression run, and the output clean-ups of issue 11
(console log levels, the evaluate-only result line, epoch.csv columns, the summary.json layout)."""
import csv
import glob
import os

import pytest
from matplotlib.image import imread

FAST = ["-a", "simplenet_cifar", "-b", "64", "--etrs", "0.1", "--etes", "0.2", "--det", "-p", "2"]
AGP = """
version: 1
pruners:
  agp:
    class: AutomatedGradualPruner
    initial_sparsity: 0.2
    final_sparsity: 0.5
    weights: [conv1.weight, conv2.weight, fc1.weight]
policies:
  - pruner: {instance_name: agp}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
"""
LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]

pytestmark = pytest.mark.slow


def read_log(run):
    with open(os.path.join(run.run_dir, os.path.basename(run.run_dir) + ".log")) as f:
        return f.read()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def agp_run(run_classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("agp")
    schedule = out / "agp.yaml"
    schedule.write_text(AGP)
    run = run_classifier(*FAST, "--epochs", 2, "--compress", schedule, "--masks-sparsity", "--param-hist",
                         "-n", "agp", "-o", out)
    assert run.status == 0, run.stderr
    return run


def test_summaries_print_and_exit(run_classifier, tmp_path):
    run = run_classifier(*FAST, "--summary", "compute", "--summary", "sparsity", "--summary", "modules",
                         "-o", tmp_path)
    assert run.status == 0, run.stderr
    assert run.summary is None  # printed the summaries and exited: no training, no test
    log = read_log(run)
    assert "Total MACs: 651,720" in log  # simplenet_cifar: 352800 + 240000 + 48000 + 10080 + 840
    assert "Ch (%)" in log and "Abs-Mean" in log and "relu_conv1" in log
    rows = read_csv(os.path.join(run.run_dir, "weights_sparsity.csv"))
    assert [r["Name"] for r in rows] == [f"{layer}.weight" for layer in LAYERS] + ["Total sparsity:"]
    assert not glob.glob(os.path.join(run.run_dir, "*.pth.tar"))


def test_summary_png_without_graphviz_fails_before_the_run_directory(run_classifier, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run = run_classifier(*FAST, "--summary", "png", "-o", tmp_path / "out")
    assert run.status == 2 and "Graphviz's 'dot' program" in run.stderr
    assert run.run_dir is None and not (tmp_path / "out").exists()


def test_summary_png_draws_the_model_in_the_run_directory(run_classifier, tmp_path, monkeypatch):
    dot = tmp_path / "bin" / "dot"  # stands in for Graphviz: writes its DOT input as the 'image'
    dot.parent.mkdir()
    dot.write_text('#!/bin/sh\nfor last; do :; done\ncat "$last"\n')
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", f"{dot.parent}{os.pathsep}{os.environ['PATH']}")
    run = run_classifier(*FAST, "--summary", "png_w_params", "-o", tmp_path)
    assert run.status == 0, run.stderr
    with open(os.path.join(run.run_dir, "model.png")) as f:
        drawing = f.read()
    assert "digraph" in drawing and "relu_conv1" in drawing and "conv1.weight" in drawing


@pytest.mark.parametrize("argv, message", [
    (["--sense", "element", "--sense-range", "0.5", "0.1", "0.1"], "--sense-range 0.5 0.1 0.1: needs START < STOP"),
    (["--summary", "model", "--sense", "filter"], "--summary and --sense"),
    (["--epochs", "1", "--compress", "no_such_schedule.yaml"], "no_such_schedule.yaml"),
])
def test_runs_refused_at_argument_checking_leave_no_directory(run_classifier, tmp_path, argv, message):
    run = run_classifier(*FAST, *argv, "-o", tmp_path / "out")
    assert run.status == 2 and message in run.stderr
    assert run.run_dir is None and not (tmp_path / "out").exists()


def test_sensitivity_analysis_writes_csv_and_png(run_classifier, tmp_path):
    run = run_classifier(*FAST, "--sense", "element", "--sense-range", "0", "0.9", "0.45", "-o", tmp_path)
    assert run.status == 0, run.stderr
    rows = read_csv(os.path.join(run.run_dir, "sensitivity.csv"))
    assert [(r["parameter"], float(r["sparsity"])) for r in rows] == [
        (f"{layer}.weight", level) for layer in LAYERS for level in (0.0, 0.45)]
    baseline = {r["top1"] for r in rows if float(r["sparsity"]) == 0.0}
    assert len(baseline) == 1  # level 0 prunes nothing: every weight's first test is the same model
    assert imread(os.path.join(run.run_dir, "sensitivity.png")).shape[1] == 1280  # top-1 and top-5 panels
    log = read_log(run)
    assert "5 weights x 2 levels on 72 test samples" in log  # --etes 0.2 of the 360 test images
    assert "Sensitivity: 5/5 weights tested" in log and "ETA" in log


def test_compression_run_reports_masks_compute_and_plots(agp_run):
    log = read_log(agp_run)
    assert "Masks sparsity (epoch 0)" in log and "Masks sparsity (epoch 1)" in log
    assert "Compute per layer, at the start of the run and now" in log
    assert "ETA" in log  # the training progress lines
    for column in ("Rows (%)", "Cols (%)", "Ch (%)", "2D (%)", "3D (%)", "Std", "Mean", "Abs-Mean"):
        assert column in log.split("Test: loss")[-1]  # the closing sparsity table is Distiller's full one
    compute = read_csv(os.path.join(agp_run.run_dir, "compute.csv"))
    total = compute[-1]
    assert total["Name"] == "Total" and int(total["MACs (start)"]) == int(total["MACs (now)"]) == 651720
    conv1 = compute[0]
    assert conv1["Name"] == "conv1" and int(conv1["Sparse MACs (now)"]) == pytest.approx(352800 * 0.5, rel=0.01)
    for name in ("epochs.png", "layer_sparsity.png"):
        assert imread(os.path.join(agp_run.run_dir, name)).ndim == 3


def test_epoch_csv_has_no_constant_step_columns(agp_run):
    rows = read_csv(os.path.join(agp_run.run_dir, "epoch.csv"))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert "completed" not in rows[0] and "total" not in rows[0]
    assert "completed" in read_csv(os.path.join(agp_run.run_dir, "performance_training.csv"))[0]


def test_tensorboard_has_histograms_layer_sparsity_and_the_graph(agp_run):
    from tensorboard.backend.event_processing import event_accumulator
    events = event_accumulator.EventAccumulator(agp_run.run_dir, size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    assert "conv1/weight" in events.Tags()["histograms"]
    assert [e.step for e in events.Histograms("conv1/weight")] == [0, 1]
    assert events.Scalars("sparsity/weights/conv1.weight")[-1].value == pytest.approx(50.0, abs=0.5)
    assert {node.name for node in events.Graph().node} >= set(LAYERS)


def test_evaluate_only_run_says_it_evaluated(run_classifier, agp_run, tmp_path):
    run = run_classifier(*FAST, "-e", "--resume-from", os.path.join(agp_run.run_dir, "checkpoint.pth.tar"),
                         "-o", tmp_path)
    assert run.status == 0, run.stderr
    assert run.summary["epochs"] == 2 and run.summary["epochs_run"] == 0
    assert "evaluation of a model trained 2 epochs" in read_log(run)
    assert not os.path.exists(os.path.join(run.run_dir, "compute.csv"))  # no compression in this run


def test_quantize_eval_console_and_summary_are_clean(run_classifier, agp_run, tmp_path, capsys):
    run = run_classifier(*FAST, "-e", "--quantize-eval", "--resume-from",
                         os.path.join(agp_run.run_dir, "checkpoint.pth.tar"), "-o", tmp_path)
    assert run.status == 0, run.stderr
    console = capsys.readouterr().out
    assert "Quantized (simulated) model" in console
    assert "quantizer: conv1 ->" not in console and "wrapped_module" not in console  # DEBUG: log file only
    assert "parameters quantized" not in console and "5 modules replaced" in console
    assert "quantizer: conv1 ->" in read_log(run)
    quantized = run.summary["quantized"]
    assert set(quantized) == {"top1", "top5", "loss", "checkpoint"} and os.path.isfile(quantized["checkpoint"])
