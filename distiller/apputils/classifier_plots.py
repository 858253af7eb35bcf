"""A classifier run's plots, written as PNG files beside its CSV files: accuracy and sparsity per epoch, and
the sparsity of each weight tensor.

Figures are drawn with matplotlib's object API (no pyplot), so no GUI backend is chosen and no global figure
state is kept.
"""
from __future__ import annotations

import os

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_epochs", "plot_layer_sparsity", "epochs_table", "EPOCHS_PNG", "LAYER_SPARSITY_PNG"]

#: File names of the plots in the run directory.
EPOCHS_PNG = "epochs.png"
LAYER_SPARSITY_PNG = "layer_sparsity.png"

_DPI = 100


def plot_epochs(epochs: pd.DataFrame, path: str) -> str:
    """Plots the training and validation top-1 accuracy and the weight sparsity against the epoch.

    Args:
        epochs: one row per epoch with the columns ``epoch``, ``train_top1``, ``valid_top1`` and ``sparsity``
            (percentages), as the classifier engine writes them to ``epoch.csv``.
        path: the PNG file to write.
    Returns:
        ``path``.
    """
    figure = Figure(figsize=(10, 4), dpi=_DPI, layout="constrained")
    accuracy, sparsity = figure.subplots(1, 2)
    accuracy.plot(epochs["epoch"], epochs["train_top1"], marker=".", label="training")
    accuracy.plot(epochs["epoch"], epochs["valid_top1"], marker=".", label="validation")
    accuracy.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="Accuracy")
    accuracy.legend()
    sparsity.plot(epochs["epoch"], epochs["sparsity"], marker=".", color="tab:red")
    sparsity.set(xlabel="epoch", ylabel="weight sparsity (%)", title="Sparsity", ylim=(0, 100))
    for axes in (accuracy, sparsity):
        axes.grid(True)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.savefig(path, format="png")
    return path


def plot_layer_sparsity(sparsity: pd.DataFrame, path: str) -> str:
    """Bar chart of each weight tensor's element (fine) and filter (3D) sparsity.

    Args:
        sparsity: :func:`distiller.weights_sparsity_summary`'s table (its total row is left out).
        path: the PNG file to write.
    Returns:
        ``path``.
    """
    layers = sparsity[sparsity["Shape"] != "-"]
    height = 1.5 + 0.3 * len(layers)
    figure = Figure(figsize=(8, height), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    positions = range(len(layers))
    axes.barh([p - 0.2 for p in positions], layers["Fine (%)"], height=0.4, label="elements (fine)")
    axes.barh([p + 0.2 for p in positions], layers["3D (%)"], height=0.4, label="filters (3D)")
    axes.set_yticks(list(positions), list(layers["Name"]))
    axes.invert_yaxis()
    axes.set(xlabel="sparsity (%)", xlim=(0, 100), title="Sparsity per weight tensor")
    axes.grid(True, axis="x")
    axes.legend(loc="lower right")
    figure.savefig(path, format="png")
    return path


def epochs_table(run_dir: str) -> pd.DataFrame:
    """The run's ``epoch.csv`` (empty when no epoch was trained)."""
    path = os.path.join(run_dir, "epoch.csv")
    return pd.read_csv(path) if os.path.isfile(path) else pd.DataFrame()
