"""Distiller's module path for ``SummaryGraph``; it now lives in :mod:`distiller.graph` (captured with torch.fx)."""
import re

from .graph.adjacency import AdjacentsEntry, OpSimpleMetadata
from .graph.summary_graph import Op, SummaryGraph

__all__ = ["SummaryGraph", "Op", "OpSimpleMetadata", "AdjacentsEntry", "onnx_name_2_pytorch_name"]


def onnx_name_2_pytorch_name(name: str) -> str:
    """The module name inside a TorchScript/ONNX scope name, as Distiller's ONNX-traced graphs spelled them:
    ``'ResNet/Sequential[layer3]/BasicBlock[0]/ReLU[relu]'`` -> ``'layer3.0.relu'``.

    Graphs built here need no conversion (ops are named after their modules); this reads names stored by
    Distiller, e.g. in old summaries.
    """
    return ".".join(re.findall(r"\[([^\[\]]*)\]", name))
