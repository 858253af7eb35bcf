"""``model_summary``: Distiller's one-call summaries of a model (weights sparsity, compute, structure, graph
drawing), and the table form of the compute summary.

The library prints nothing: each summary is logged at INFO level (logger ``distiller.summaries``) and
returned as text, so applications print or save it as they wish.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from tabulate import tabulate

from ..errors import ArgumentError
from ..model_tools import get_dummy_input
from ..utils import model_device
from .compute import model_performance_summary
from .sparsity import weights_sparsity_summary, weights_sparsity_tbl_summary

msglogger = logging.getLogger("distiller.summaries")

__all__ = ["SUMMARY_KINDS", "PNG_FILE_NAME", "model_summary", "model_performance_tbl_summary"]

#: The values of ``model_summary``'s ``what``.
SUMMARY_KINDS = ("sparsity", "compute", "model", "modules", "png", "png_w_params")
#: The file that the ``'png'`` and ``'png_w_params'`` summaries write in ``logdir`` (Distiller's name).
PNG_FILE_NAME = "model.png"


def model_performance_tbl_summary(model: torch.nn.Module, dummy_input: Any, batch_size: int) -> str:
    """:func:`~distiller.summaries.model_performance_summary` as a text table (feature maps, weights, MACs per
    layer)."""
    df = model_performance_summary(model, dummy_input, batch_size)
    return tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")


def _needs_dataset(what: str, dataset: Optional[str]) -> str:
    if dataset is None:
        raise ArgumentError(f"model_summary(what={what!r}) needs the dataset, to build an example input")
    return dataset


def _compute_summary(model: torch.nn.Module, dataset: Optional[str]) -> str:
    dataset = _needs_dataset("compute", dataset)
    df = model_performance_summary(model, get_dummy_input(dataset, model_device(model)))
    table = tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")
    return f"{table}\nTotal MACs: {int(df['MACs'].sum()):,}"


def _leaf_modules_table(model: torch.nn.Module) -> str:
    leaves = [[name, type(module).__name__] for name, module in model.named_modules()
              if name and next(module.children(), None) is None]
    return tabulate(leaves, headers=["Name", "Type"])


def _drawing(model: torch.nn.Module, dataset: Optional[str], logdir: str, with_params: bool) -> str:
    from ..graph.drawing import draw_img_classifier_to_file  # imports pydot: only for drawings

    path = os.path.join(logdir, PNG_FILE_NAME)
    draw_img_classifier_to_file(model, path, _needs_dataset("png_w_params" if with_params else "png", dataset),
                                display_param_nodes=with_params)
    return f"Drew the model's graph{' with its parameters' if with_params else ''} to {path}"


def model_summary(model: torch.nn.Module, what: str, dataset: Optional[str] = None, logdir: str = "") -> str:
    """Summarizes ``model``; the summary is logged and returned as text.

    Args:
        model: the model.
        what: ``'sparsity'``: the weights sparsity table (also written, all columns, to
            ``<logdir>/weights_sparsity.csv``); ``'compute'``: per-layer feature maps, weights and MACs, with the
            total (needs ``dataset``); ``'model'``: the module tree as PyTorch prints it; ``'modules'``: the leaf
            modules and their types; ``'png'`` / ``'png_w_params'``: the graph (with the parameters as nodes)
            drawn to ``<logdir>/model.png`` (needs ``dataset`` and Graphviz's ``dot``).
        dataset: the dataset the model takes (for ``'compute'`` and the drawings), e.g. ``'cifar10'``.
        logdir: where the CSV file and the drawing go.
    Raises:
        ArgumentError: an unknown ``what``, or ``'compute'``/``'png'``/``'png_w_params'`` without a dataset.
        MissingDependencyError: a drawing without Graphviz's ``dot`` program.
    """
    if what == "sparsity":
        weights_sparsity_summary(model).to_csv(os.path.join(logdir, "weights_sparsity.csv"), index=False)
        text = weights_sparsity_tbl_summary(model)
    elif what in ("png", "png_w_params"):
        text = _drawing(model, dataset, logdir, what == "png_w_params")
    elif what == "compute":
        text = _compute_summary(model, dataset)
    elif what == "model":
        text = str(model)
    elif what == "modules":
        text = _leaf_modules_table(model)
    else:
        raise ArgumentError(f"model_summary: unknown summary {what!r}; expected one of {list(SUMMARY_KINDS)}")
    msglogger.info("%s", text)
    return text
