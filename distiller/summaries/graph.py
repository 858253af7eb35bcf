"""Graph summaries: each op of a :class:`~distiller.graph.SummaryGraph` with its inputs and outputs (connectivity)
or its attributes (kernel sizes, strides, call arguments).

Inputs and outputs are op names (the graph's inputs are ops too, named after the ``forward`` arguments);
the verbose form adds each tensor's shape.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
from tabulate import tabulate
from torch import fx

from ..graph.summary_graph import Op, SummaryGraph

__all__ = ["connectivity_summary", "connectivity_summary_verbose", "connectivity_tbl_summary", "op_attributes",
           "attributes_summary", "attributes_summary_tbl"]

_COMPUTING_KINDS = ("module", "function", "method")


def _computing_ops(sgraph: SummaryGraph) -> list[Op]:
    return [op for op in sgraph if op.kind in _COMPUTING_KINDS]


def connectivity_summary(sgraph: SummaryGraph) -> pd.DataFrame:
    """One row per op: ``Name``, ``Type``, ``Inputs`` (names of the ops it reads) and ``Outputs`` (names of
    the ops that read its result)."""
    return pd.DataFrame([[op.name, op.type, list(op.inputs), list(op.outputs)] for op in _computing_ops(sgraph)],
                        columns=["Name", "Type", "Inputs", "Outputs"])


def _with_shapes(sgraph: SummaryGraph, names: Iterable[str]) -> str:
    lines = []
    for name in names:
        shapes = sgraph.ops[name].output_shapes
        lines.append(f"{name} {', '.join(str(tuple(s)) for s in shapes)}" if shapes else name)
    return "\n".join(lines)


def connectivity_summary_verbose(sgraph: SummaryGraph) -> pd.DataFrame:
    """As :func:`connectivity_summary`, with the shape of every input and output tensor (one per line)."""
    return pd.DataFrame([[op.name, op.type, _with_shapes(sgraph, op.inputs),
                          _with_shapes(sgraph, [op.name])] for op in _computing_ops(sgraph)],
                        columns=["Name", "Type", "Inputs", "Outputs"])


def connectivity_tbl_summary(sgraph: SummaryGraph, verbose: bool = False) -> str:
    """The connectivity summary (verbose: with shapes) as a text table."""
    df = connectivity_summary_verbose(sgraph) if verbose else connectivity_summary(sgraph)
    return tabulate(df, headers="keys", tablefmt="psql")


def op_attributes(op: Op) -> dict[str, Any]:
    """An op's attributes: a module's constants (``kernel_size``, ``stride``, ``padding``, ``groups``...,
    PyTorch's ``__constants__`` of its class), or a function/method call's non-tensor arguments (positional
    ones as ``arg<i>``)."""
    if op.kind == "module":
        return {name: getattr(op.module, name) for name in getattr(type(op.module), "__constants__", ())
                if hasattr(op.module, name)}
    attrs = {f"arg{i}": arg for i, arg in enumerate(op.node.args) if not isinstance(arg, fx.Node)}
    attrs.update({key: value for key, value in op.node.kwargs.items() if not isinstance(value, fx.Node)})
    return attrs


def _pretty(value: Any) -> str:
    return f"{value:,d}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def attributes_summary(sgraph: SummaryGraph, ignore_attrs: Iterable[str]) -> pd.DataFrame:
    """One row per op: ``Name``, ``Type`` and ``Attributes`` (``key: value`` lines, see :func:`op_attributes`),
    leaving out the attributes named in ``ignore_attrs``."""
    ignored = set(ignore_attrs or ())
    rows = []
    for op in _computing_ops(sgraph):
        attrs = "".join(f"{key}: {_pretty(value)}\n" for key, value in op_attributes(op).items() if key not in ignored)
        rows.append([op.name, op.type, attrs])
    return pd.DataFrame(rows, columns=["Name", "Type", "Attributes"])


def attributes_summary_tbl(sgraph: SummaryGraph, ignore_attrs: Iterable[str]) -> str:
    """:func:`attributes_summary` as a text table."""
    return tabulate(attributes_summary(sgraph, ignore_attrs), headers="keys", tablefmt="psql")
