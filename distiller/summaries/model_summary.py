"""``model_summary``: Distiller's one-call text summaries of a model (weights sparsity, compute, structure),
and the table form of the compute summary.

The library prints nothing: each summary is logged at INFO level (logger ``distiller.summaries``) and
returned as text, so applications print or save it as they wish.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from tabulate import tabulate

from ..data_loggers.logger import CsvLogger, log_weights_sparsity
from ..errors import ArgumentError
from ..model_tools import get_dummy_input
from ..utils import model_device
from .compute import model_performance_summary
from .sparsity import weights_sparsity_tbl_summary

msglogger = logging.getLogger("distiller.summaries")

__all__ = ["SUMMARY_KINDS", "model_summary", "model_performance_tbl_summary"]

#: The values of ``model_summary``'s ``what``.
SUMMARY_KINDS = ("sparsity", "compute", "model", "modules")


def model_performance_tbl_summary(model: torch.nn.Module, dummy_input: Any, batch_size: int) -> str:
    """:func:`~distiller.summaries.model_performance_summary` as a text table (feature maps, weights, MACs per
    layer)."""
    df = model_performance_summary(model, dummy_input, batch_size)
    return tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")


def _compute_summary(model: torch.nn.Module, dataset: Optional[str]) -> str:
    if dataset is None:
        raise ArgumentError("model_summary(what='compute') needs the dataset, to build an example input")
    df = model_performance_summary(model, get_dummy_input(dataset, model_device(model)))
    table = tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")
    return f"{table}\nTotal MACs: {int(df['MACs'].sum()):,}"


def _leaf_modules_table(model: torch.nn.Module) -> str:
    leaves = [[name, type(module).__name__] for name, module in model.named_modules()
              if name and next(module.children(), None) is None]
    return tabulate(leaves, headers=["Name", "Type"])


def model_summary(model: torch.nn.Module, what: str, dataset: Optional[str] = None, logdir: str = "") -> str:
    """Summarizes ``model``; the summary is logged and returned as text.

    Args:
        model: the model.
        what: ``'sparsity'``: the weights sparsity table (also logged to ``<logdir>/weights_sparsity.csv``);
            ``'compute'``: per-layer feature maps, weights and MACs, with the total (needs ``dataset``);
            ``'model'``: the module tree as PyTorch prints it; ``'modules'``: the leaf modules and their types.
        dataset: the dataset the model takes (for ``'compute'``), e.g. ``'cifar10'``.
        logdir: where the ``'sparsity'`` CSV file goes.
    Raises:
        ArgumentError: an unknown ``what``, or ``'compute'`` without a dataset. (Distiller's ``'png'`` and
            ``'png_w_params'`` drawings are not available; see the migration table in the README.)
    """
    if what == "sparsity":
        log_weights_sparsity(model, -1, loggers=[CsvLogger(logdir=logdir)])
        text = weights_sparsity_tbl_summary(model)
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
