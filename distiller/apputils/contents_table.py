"""``get_contents_table``: a readable table of what a checkpoint (or any dict) holds."""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from tabulate import tabulate

__all__ = ["get_contents_table"]


def _describe(value: Any) -> Any:
    """Numbers and strings as they are; tensors by shape and dtype; containers by size; others by type."""
    if isinstance(value, (numbers.Number, str)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        return f"{len(value)} entries"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} items"
    return type(value).__name__


def get_contents_table(d: Mapping[str, Any]) -> str:
    """A text table of ``d``'s entries, sorted by key: ``Key``, ``Type``, ``Value`` (summarized).

    Example:
        >>> print(get_contents_table(distiller.apputils.read_checkpoint('checkpoint.pth.tar')))
    """
    rows = sorted(([str(key), type(value).__name__, _describe(value)] for key, value in d.items()),
                  key=lambda row: row[0])
    return tabulate(rows, headers=["Key", "Type", "Value"], tablefmt="psql")
