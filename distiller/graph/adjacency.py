"""Each op's immediate neighbours in a :class:`~distiller.graph.SummaryGraph`, in the plain records of
Distiller's ``SummaryGraph.adjacency_map()`` (used e.g. by BatchNorm folding to find a layer's successor).

Op types are those of :class:`~distiller.graph.summary_graph.Op`: module class names (``'Conv2d'``),
function and method names (``'add'``, ``'flatten'``), not Distiller's ONNX op types (``'Conv'``, ``'Gemm'``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .summary_graph import SummaryGraph

__all__ = ["OpSimpleMetadata", "AdjacentsEntry", "adjacency_map"]

#: Op kinds that compute something (graph inputs, outputs and attribute reads are not ops of the map).
_COMPUTING_KINDS = ("module", "function", "method")


class OpSimpleMetadata:
    """An op's name and type."""

    def __init__(self, name: str, type: str) -> None:
        self.name, self.type = name, type

    def __repr__(self) -> str:
        return f"Op('{self.name}' | {self.type})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpSimpleMetadata) and (self.name, self.type) == (other.name, other.type)

    def __hash__(self) -> int:
        return hash((self.name, self.type))


class AdjacentsEntry:
    """An op (``op_meta``) with the ops it reads from (``predecessors``) and that read its output
    (``successors``), both lists of :class:`OpSimpleMetadata`."""

    def __init__(self, op_meta: OpSimpleMetadata) -> None:
        self.op_meta = op_meta
        self.predecessors: list[OpSimpleMetadata] = []
        self.successors: list[OpSimpleMetadata] = []

    def __repr__(self) -> str:
        return f"OP: {self.op_meta} ; PREDECESSORS: {self.predecessors} ; SUCCESSORS: {self.successors}"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, AdjacentsEntry) and self.op_meta == other.op_meta
                and self.predecessors == other.predecessors and self.successors == other.successors)


def adjacency_map(sgraph: SummaryGraph, dedicated_modules_only: bool = False) -> OrderedDict[str, AdjacentsEntry]:
    """Maps every op of ``sgraph`` (in execution order) to its immediate predecessors and successors.

    Args:
        sgraph: the graph.
        dedicated_modules_only: keep only ops that are the single call of a leaf module (no functional ops such
            as ``torch.flatten`` or ``x + y``, no module called twice); such ops are named by their module.
    Returns:
        ``OrderedDict`` op name -> :class:`AdjacentsEntry`; neighbours that the filter excludes are left out.
    """
    def dedicated(op_name: str) -> bool:
        op = sgraph.ops[op_name]
        return (op.kind == "module" and len(sgraph.module_ops(op.module_name)) == 1
                and next(op.module.children(), None) is None)

    def kept(op_name: str) -> bool:
        return sgraph.ops[op_name].kind in _COMPUTING_KINDS and (not dedicated_modules_only or dedicated(op_name))

    def meta(op_name: str) -> OpSimpleMetadata:
        return OpSimpleMetadata(op_name, sgraph.ops[op_name].type)

    result: OrderedDict[str, AdjacentsEntry] = OrderedDict()
    for op in sgraph:
        if not kept(op.name):
            continue
        entry = AdjacentsEntry(meta(op.name))
        entry.predecessors = [meta(name) for name in op.inputs if kept(name)]
        entry.successors = [meta(name) for name in op.outputs if kept(name)]
        result[op.name] = entry
    return result
