"""A model's graph for TensorBoard's Graphs tab, from a :class:`~distiller.graph.SummaryGraph` (torch.fx).

``SummaryWriter.add_graph`` traces the model with ``torch.jit.trace``, which PyTorch deprecates; this builds
TensorBoard's ``GraphDef`` from the graph distiller already captures with torch.fx instead. Each op is a node
named by its module path with ``/`` separators (``layer1/0/conv1``), so TensorBoard folds the nodes of each
submodule into one box; functional ops (``add``, ``flatten``) sit inside the module that called them. A node
shows its type as the op and its output shape.
"""
from __future__ import annotations

from typing import Optional

from tensorboard.compat.proto.attr_value_pb2 import AttrValue
from tensorboard.compat.proto.config_pb2 import RunMetadata
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.versions_pb2 import VersionDef

from ..graph.summary_graph import Op, SummaryGraph

__all__ = ["summary_graph_to_graphdef", "graph_profile"]


def _scope(op: Op) -> str:
    """The module path an op belongs to (its own for module calls, its caller's for functional ops)."""
    if op.module_name:
        return op.name
    stack = op.node.meta.get("nn_module_stack") or {}
    callers = [path for path, _ in stack.values()]
    # the innermost caller: a functional op called by a leaf module wrapper (EltwiseAdd) sits beside it
    return f"{callers[-1]}.{op.name}" if callers else op.name


def _node_name(op: Op) -> str:
    return _scope(op).replace(".", "/")


def _shape_attr(op: Op) -> Optional[AttrValue]:
    if not op.output_shapes:
        return None
    shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(size)) for size in shape])
              for shape in op.output_shapes]
    return AttrValue(list=AttrValue.ListValue(shape=shapes))


def summary_graph_to_graphdef(sgraph: SummaryGraph) -> GraphDef:
    """TensorBoard's ``GraphDef`` of ``sgraph``: one node per op, edges from each op's inputs."""
    names = {op.name: _node_name(op) for op in sgraph}
    nodes = []
    for op in sgraph:
        attrs = {}
        shape = _shape_attr(op)
        if shape is not None:
            attrs["_output_shapes"] = shape
        nodes.append(NodeDef(name=names[op.name], op=op.type, input=[names[i] for i in op.inputs], attr=attrs))
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


def graph_profile(sgraph: SummaryGraph) -> tuple[GraphDef, RunMetadata]:
    """``(GraphDef, RunMetadata)``: what ``torch.utils.tensorboard.FileWriter.add_graph`` writes."""
    return summary_graph_to_graphdef(sgraph), RunMetadata()
