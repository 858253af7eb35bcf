"""What the classifier application shows about a model: ``--summary`` and ``--sense`` (print or write, then
exit), ``--masks-sparsity`` and ``--param-hist`` (each epoch), and a compression run's closing reports: the
per-layer compute table (at the run's start vs now) and the run's plots, PNGs beside its CSVs.

The engine (:class:`~distiller.apputils.image_classifier.ClassifierCompressor`) stays a training loop; the
application calls these functions with it::

    check_analysis_args(args, model)         # in the setup, before the run directory exists
    run_summaries(app) / run_sensitivity(app)
    reports = RunReports(app)                # before training: the graph to TensorBoard, the starting MACs
    ...train...
    reports.close()                          # after training (and thinning)
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate
from tqdm import tqdm

from ..benchmark import compare, format_table
from ..data_loggers.logger import TensorBoardLogger, format_seconds
from ..errors import ArgumentError
from ..graph.capture import GraphCaptureError
from ..graph.cost import counted_layer
from ..graph.drawing import dot_program
from ..metrics import density
from ..models import create_model
from ..sensitivity import Sensitivities, perform_sensitivity_analysis, sensitivities_to_csv, sensitivities_to_png
from ..summaries import (masks_sparsity_tbl_summary, model_performance_summary, model_summary,
                         weights_sparsity_summary)
from .classifier_loop import evaluate
from .classifier_plots import EPOCHS_PNG, LAYER_SPARSITY_PNG, epochs_table, plot_epochs, plot_layer_sparsity
from .distributed import is_main_process

__all__ = ["check_analysis_args", "sensitivity_levels", "prunable_weights", "run_summaries", "run_sensitivity",
           "epoch_reports", "compute_comparison", "RunReports", "SENSITIVITY_CSV", "SENSITIVITY_PNG",
           "COMPUTE_CSV", "benchmark_dense_vs_compressed", "BENCHMARK_CSV"]

msglogger = logging.getLogger(__name__)

SENSITIVITY_CSV = "sensitivity.csv"
SENSITIVITY_PNG = "sensitivity.png"
COMPUTE_CSV = "compute.csv"
BENCHMARK_CSV = "benchmark.csv"


def sensitivity_levels(args: argparse.Namespace) -> np.ndarray:
    """The sparsity levels of ``--sense-range START STOP STEP``: ``numpy.arange(START, STOP, STEP)``.

    Raises:
        ArgumentError: no level, or a level outside [0, 1].
    """
    start, stop, step = args.sensitivity_range
    if step <= 0 or stop <= start:
        raise ArgumentError(f"--sense-range {start:g} {stop:g} {step:g}: needs START < STOP and STEP > 0 (levels are "
                            f"numpy.arange(START, STOP, STEP)), e.g. --sense-range 0 0.95 0.05")
    levels = np.arange(start, stop, step)
    if levels[0] < 0 or levels[-1] > 1:
        raise ArgumentError(f"--sense-range {start:g} {stop:g} {step:g}: the levels {levels[0]:g}..{levels[-1]:g} "
                            f"must lie in [0, 1] (fractions of each weight to prune)")
    return levels


def prunable_weights(model: torch.nn.Module) -> list[str]:
    """The names of the model's 2D and 4D weights (linear and convolution layers): what ``--sense`` tests."""
    return [name for name, param in model.named_parameters() if name.endswith("weight") and param.dim() in (2, 4)]


def check_analysis_args(args: argparse.Namespace, model: torch.nn.Module) -> None:
    """Checks the analysis flags against each other, the model and the machine, before anything is written.

    Raises:
        ArgumentError: ``--summary`` with ``--sense``, a bad ``--sense-range``, ``--sense`` on a model without a
            2D/4D weight.
        MissingDependencyError: ``--summary png``/``png_w_params`` without Graphviz's ``dot`` program.
    """
    summaries, sensitivity = getattr(args, "summary", None), getattr(args, "sensitivity", None)
    if summaries and sensitivity:
        raise ArgumentError("--summary and --sense each analyse the model and exit: run them separately")
    if summaries and {"png", "png_w_params"} & set(summaries):
        dot_program()
    if sensitivity:
        sensitivity_levels(args)
        if not prunable_weights(model):
            raise ArgumentError(f"--sense {sensitivity}: {type(model).__name__} has no linear or convolution weight "
                                f"(2D or 4D) to prune")


def run_summaries(app: Any) -> list[str]:
    """Logs each ``--summary`` of the application's model (the drawings go to ``<run dir>/model.png``); returns
    their texts."""
    with app.compression_scheduler.soft_masks_applied():
        return [model_summary(app.model, what, dataset=app.experiment.dataset, logdir=app.logdir)
                for what in app.args.summary]


class _SensitivityProgress:
    """Counts the results of a sensitivity analysis: a terminal progress bar, and a log line (with the time
    left) each time a weight's levels are done."""

    def __init__(self, weights: int, levels: int) -> None:
        self.total, self.levels, self.done = weights * levels, levels, 0
        self.started = time.time()
        self.bar = tqdm(total=self.total, desc="Sensitivity", unit="test", leave=False, disable=None)

    def step(self, *result: Any) -> None:
        """Counts one ``(param_name, level, scores)`` result."""
        self.done += 1
        self.bar.update()
        if self.done % self.levels == 0:
            elapsed = time.time() - self.started
            msglogger.info("Sensitivity: %d/%d weights tested in %s, ETA %s", self.done // self.levels,
                           self.total // self.levels, format_seconds(elapsed),
                           format_seconds(elapsed / self.done * (self.total - self.done)))

    def close(self) -> None:
        self.bar.close()


def run_sensitivity(app: Any) -> Sensitivities:
    """``--sense GROUP``: the pruning sensitivity of every linear and convolution weight on the test set (its
    ``--effective-test-size`` portion), at the ``--sense-range`` levels; filter/channel pruning is group-aware
    (see :func:`distiller.perform_sensitivity_analysis`). Writes ``sensitivity.csv`` and ``sensitivity.png`` in
    the run directory; returns the results."""
    args, model = app.args, app.model
    levels, weights = sensitivity_levels(args), prunable_weights(model)
    progress = _SensitivityProgress(len(weights), len(levels))

    def test(model: torch.nn.Module) -> tuple[float, float, float]:
        results = evaluate(model, app.criterion, app.test_loader)
        return results["Top1"], results["Top5"], results["Loss"]

    msglogger.info("Sensitivity analysis (%s): %d weights x %d levels on %d test samples", args.sensitivity,
                   len(weights), len(levels), len(app.test_loader.sampler))
    try:
        with app.compression_scheduler.soft_masks_applied():
            sensitivities = perform_sensitivity_analysis(model, weights, levels.tolist(), test, args.sensitivity,
                                                         dummy_input=app.experiment.dummy_input,
                                                         on_result=progress.step)
    finally:
        progress.close()
    sensitivities_to_csv(sensitivities, os.path.join(app.logdir, SENSITIVITY_CSV))
    sensitivities_to_png(sensitivities, os.path.join(app.logdir, SENSITIVITY_PNG))
    msglogger.info("Sensitivity results: %s and %s in %s", SENSITIVITY_CSV, SENSITIVITY_PNG, app.logdir)
    return sensitivities


def epoch_reports(app: Any, epoch: int) -> None:
    """End of an epoch: the masks sparsity table (``--masks-sparsity``) and the parameter histograms to
    TensorBoard (``--param-hist``, step = epoch)."""
    if getattr(app.args, "masks_sparsity", False):
        msglogger.info("Masks sparsity (epoch %d):\n%s", epoch,
                       masks_sparsity_tbl_summary(app.model, app.compression_scheduler))
    if getattr(app.args, "param_hist", False):
        app.tflogger.log_weights_distribution(app.model.named_parameters(), epoch)


def _layer_macs(model: torch.nn.Module, dummy_input: torch.Tensor) -> pd.DataFrame:
    """Per layer: its dense MACs (summed over its calls) and its weight's non-zero fraction."""
    calls = model_performance_summary(model, dummy_input)
    df = calls.groupby(["Name", "Type"], sort=False, as_index=False)["MACs"].sum()
    layers = [counted_layer(model.get_submodule(name)) for name in df["Name"]]
    df["Density"] = [density(cast(torch.Tensor, layer.weight)) if layer is not None else 1.0 for layer in layers]
    return df


def compute_comparison(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per-layer MACs before and after compression, from two :func:`_layer_macs` tables.

    Returns:
        columns ``Name``, ``Type``, ``MACs (start)``, ``MACs (now)`` (dense: what thinning changes),
        ``Sparse MACs (now)`` (the MACs of the non-zero weights: ``MACs x density``, what a sparse kernel
        computes) and ``Sparse/start (%)``; a last ``Total`` row.
    """
    df = before[["Name", "Type", "MACs"]].merge(after, on=["Name", "Type"], how="outer", suffixes=(" (start)", ""))
    df = df.fillna({"MACs (start)": 0, "MACs": 0, "Density": 0.0})
    df["Sparse MACs (now)"] = (df["MACs"] * df["Density"]).round().astype(int)
    df = df.rename(columns={"MACs": "MACs (now)"}).drop(columns="Density")
    total = {"Name": "Total", "Type": "", **{c: df[c].sum() for c in ("MACs (start)", "MACs (now)",
                                                                       "Sparse MACs (now)")}}
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    df[["MACs (start)", "MACs (now)"]] = df[["MACs (start)", "MACs (now)"]].astype(int)
    df["Sparse/start (%)"] = 100.0 * df["Sparse MACs (now)"] / df["MACs (start)"].where(df["MACs (start)"] > 0)
    return df


class RunReports:
    """A training run's reports: at construction (before training) the model's graph goes to TensorBoard and
    its per-layer MACs are recorded; :meth:`close` (after training and thinning) logs the per-layer compute
    table (start vs now, also ``compute.csv``) and plots the run (``epochs.png``, ``layer_sparsity.png``), on the
    main process of a torchrun launch."""

    def __init__(self, app: Any) -> None:
        self.app = app
        with app.compression_scheduler.soft_masks_applied():
            self.start = _layer_macs(app.model, app.experiment.dummy_input)
        if isinstance(app.tflogger, TensorBoardLogger):
            try:
                app.tflogger.log_graph(app.model, app.experiment.dummy_input)
            except GraphCaptureError as err:  # the graph is an extra: the run goes on without it
                msglogger.warning("TensorBoard graph not written: %s", err)

    def close(self) -> None:
        if not is_main_process():  # a torchrun launch: rank 0 writes the reports
            return
        app = self.app
        with app.compression_scheduler.soft_masks_applied():
            now = _layer_macs(app.model, app.experiment.dummy_input)
            sparsity = weights_sparsity_summary(app.model)
        table = compute_comparison(self.start, now)
        table.to_csv(os.path.join(app.logdir, COMPUTE_CSV), index=False)
        msglogger.info("Compute per layer, at the start of the run and now (sparse: MACs of the non-zero weights):"
                       "\n%s", tabulate(table, headers="keys", tablefmt="psql", floatfmt=".2f", showindex=False))
        plots = [plot_layer_sparsity(sparsity, os.path.join(app.logdir, LAYER_SPARSITY_PNG))]
        epochs = epochs_table(app.logdir)
        if len(epochs):
            plots.append(plot_epochs(epochs, os.path.join(app.logdir, EPOCHS_PNG)))
        msglogger.info("Plots: %s", ", ".join(plots))
        if getattr(app.args, "benchmark", False):
            benchmark_dense_vs_compressed(app)


def benchmark_dense_vs_compressed(app: Any) -> pd.DataFrame:
    """``--benchmark``: the run's architecture freshly built (dense) against the compressed model, at batch 1 and
    ``--batch-size`` (:func:`distiller.benchmark.compare`); logged and written to ``benchmark.csv``."""
    exp = app.experiment
    dense = create_model(False, exp.dataset, exp.arch, parallel=False).to(exp.device)
    with app.compression_scheduler.soft_masks_applied():
        table = compare(dense, app.model, exp.dummy_input, batch_sizes=sorted({1, app.args.batch_size}))
    table.to_csv(os.path.join(app.logdir, BENCHMARK_CSV), index=False)
    msglogger.info("Dense versus compressed (%s on %s):\n%s", exp.arch, exp.device, format_table(table))
    return table
