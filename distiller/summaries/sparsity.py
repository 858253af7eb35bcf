"""Sparsity summaries: per-tensor tables of how much of each weight (or pruning mask) is zero, by structure.

The tensors covered are those of :func:`distiller.metrics.selected_tensors` (by default the weights and
biases of rank 2 and 4: Linear and Conv2d). Percentages are 0-100; the last row holds the totals.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence, Union, overload

import pandas as pd
import torch
from tabulate import tabulate

from ..errors import ArgumentError
from ..metrics import (density, selected_tensors, sparsity_2D, sparsity_3D, sparsity_ch, sparsity_cols,
                       sparsity_rows)
from ..pyutils import size_to_str

__all__ = ["WEIGHTS_SPARSITY_COLUMNS", "weights_sparsity_summary", "weights_sparsity_tbl_summary",
           "masks_sparsity_summary", "masks_sparsity_tbl_summary"]

#: Columns of :func:`weights_sparsity_summary` (Distiller's).
WEIGHTS_SPARSITY_COLUMNS = ["Name", "Shape", "NNZ (dense)", "NNZ (sparse)", "Cols (%)", "Rows (%)", "Ch (%)",
                            "2D (%)", "3D (%)", "Fine (%)", "Std", "Mean", "Abs-Mean"]
TOTAL_ROW_NAME = "Total sparsity:"


def _tensors(model: torch.nn.Module, param_dims: Sequence[int]) -> list[tuple[str, torch.Tensor]]:
    tensors = [(name, tensor.detach()) for name, tensor in selected_tensors(model, tuple(param_dims))]
    if not tensors:
        raise ArgumentError(f"the model has no weight or bias of rank {list(param_dims)} to summarize; widen "
                            f"param_dims")
    return tensors


def _total_sparsity(volume: int, nonzeros: float) -> float:
    return 100.0 * (1.0 - nonzeros / volume)


@overload
def weights_sparsity_summary(model: torch.nn.Module, return_total_sparsity: Literal[False] = False,
                             param_dims: Sequence[int] = (2, 4)) -> pd.DataFrame: ...


@overload
def weights_sparsity_summary(model: torch.nn.Module, return_total_sparsity: Literal[True],
                             param_dims: Sequence[int] = (2, 4)) -> tuple[pd.DataFrame, float]: ...


@overload
def weights_sparsity_summary(model: torch.nn.Module, return_total_sparsity: bool = False,
                             param_dims: Sequence[int] = (2, 4)) -> Union[pd.DataFrame, tuple[pd.DataFrame, float]]: ...


def weights_sparsity_summary(model: torch.nn.Module, return_total_sparsity: bool = False,
                             param_dims: Sequence[int] = (2, 4)) -> Union[pd.DataFrame, tuple[pd.DataFrame, float]]:
    """One row per weight/bias tensor of rank ``param_dims``: shape, element counts, the sparsity of each
    structure type (columns, rows, channels, kernels, filters, elements) and value statistics.

    Args:
        model: the model.
        return_total_sparsity: also return the percentage of zeros over all the tensors.
        param_dims: tensor ranks to include.
    Returns:
        a DataFrame with :data:`WEIGHTS_SPARSITY_COLUMNS` and a last ``'Total sparsity:'`` row (its ``Fine (%)``
        is the total), and the total when ``return_total_sparsity``.
    Raises:
        ArgumentError: no tensor of those ranks.

    Example:
        >>> df, total = weights_sparsity_summary(model, return_total_sparsity=True)
    """
    rows, volume, nonzeros = [], 0, 0
    for name, tensor in _tensors(model, param_dims):
        values = tensor.float()
        tensor_density = density(tensor)
        volume += tensor.numel()
        nonzeros += int(round(tensor_density * tensor.numel()))
        rows.append([name, size_to_str(tensor.shape), tensor.numel(), int(round(tensor_density * tensor.numel())),
                     100 * sparsity_cols(tensor), 100 * sparsity_rows(tensor), 100 * sparsity_ch(tensor),
                     100 * sparsity_2D(tensor), 100 * sparsity_3D(tensor), 100 * (1 - tensor_density),
                     values.std().item() if tensor.numel() > 1 else 0.0, values.mean().item(),
                     values.abs().mean().item()])
    total = _total_sparsity(volume, nonzeros)
    rows.append([TOTAL_ROW_NAME, "-", volume, nonzeros, 0, 0, 0, 0, 0, total, 0, 0, 0])
    df = pd.DataFrame(rows, columns=WEIGHTS_SPARSITY_COLUMNS)
    return (df, total) if return_total_sparsity else df


@overload
def weights_sparsity_tbl_summary(model: torch.nn.Module, return_total_sparsity: Literal[False] = False,
                                 param_dims: Sequence[int] = (2, 4)) -> str: ...


@overload
def weights_sparsity_tbl_summary(model: torch.nn.Module, return_total_sparsity: Literal[True],
                                 param_dims: Sequence[int] = (2, 4)) -> tuple[str, float]: ...


@overload
def weights_sparsity_tbl_summary(model: torch.nn.Module, return_total_sparsity: bool = False,
                                 param_dims: Sequence[int] = (2, 4)) -> Union[str, tuple[str, float]]: ...


def weights_sparsity_tbl_summary(model: torch.nn.Module, return_total_sparsity: bool = False,
                                 param_dims: Sequence[int] = (2, 4)) -> Union[str, tuple[str, float]]:
    """:func:`weights_sparsity_summary` as a text table (and the total sparsity when asked)."""
    df, total = weights_sparsity_summary(model, return_total_sparsity=True, param_dims=param_dims)
    table = tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")
    return (table, total) if return_total_sparsity else table


def _mask_of(scheduler: Any, name: str) -> Any:
    masks = scheduler.zeros_mask_dict
    masker = masks[name] if name in masks else None
    return None if masker is None else masker.mask


def masks_sparsity_summary(model: torch.nn.Module, scheduler: Any, param_dims: Sequence[int] = (2, 4)) -> pd.DataFrame:
    """The sparsity of the scheduler's pruning masks (not of the weights themselves): one row per weight/bias
    of rank ``param_dims`` (no mask counts as 0%) and a last ``'Total sparsity:'`` row.

    Args:
        model: the model the scheduler compresses.
        scheduler: a :class:`~distiller.CompressionScheduler` (its ``zeros_mask_dict``).
        param_dims: tensor ranks to include.
    """
    rows, volume, nonzeros = [], 0, 0.0
    for name, tensor in _tensors(model, param_dims):
        mask = _mask_of(scheduler, name)
        mask_density = 1.0 if mask is None else density(mask)
        volume += tensor.numel()
        nonzeros += mask_density * tensor.numel()
        rows.append([name, 100 * (1 - mask_density)])
    rows.append([TOTAL_ROW_NAME, _total_sparsity(volume, nonzeros)])
    return pd.DataFrame(rows, columns=["Name", "Fine (%)"])


def masks_sparsity_tbl_summary(model: torch.nn.Module, scheduler: Any, param_dims: Sequence[int] = (2, 4)) -> str:
    """:func:`masks_sparsity_summary` as a text table."""
    return tabulate(masks_sparsity_summary(model, scheduler, param_dims), headers="keys", tablefmt="psql",
                    floatfmt=".5f")
