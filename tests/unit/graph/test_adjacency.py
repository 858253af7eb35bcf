"""SummaryGraph.adjacency_map (Distiller's OpSimpleMetadata / AdjacentsEntry records) and the
distiller.summary_graph compatibility module."""
import torch
from torch import nn

from distiller.summary_graph import AdjacentsEntry, OpSimpleMetadata, SummaryGraph, onnx_name_2_pytorch_name
from distiller.testing import TinyResidualNet


class SharedRelu(nn.Module):
    """One ReLU module called twice, and a functional op between the convolutions."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        return self.relu(self.conv2(x * 2))


def test_adjacency_map_lists_immediate_neighbours_in_execution_order():
    graph = SummaryGraph(TinyResidualNet(), torch.randn(1, 3, 8, 8))
    adjacency = graph.adjacency_map()
    assert list(adjacency)[:3] == ["conv1", "bn1", "relu"]
    conv1 = adjacency["conv1"]
    assert isinstance(conv1, AdjacentsEntry) and conv1.op_meta == OpSimpleMetadata("conv1", "Conv2d")
    assert conv1.predecessors == [] and conv1.successors == [OpSimpleMetadata("bn1", "BatchNorm2d")]
    # the stem's ReLU feeds the block and the residual add
    assert [op.name for op in adjacency["relu"].successors] == ["block_conv1", "add"]
    assert [op.name for op in adjacency["add"].predecessors] == ["block_bn2", "relu"]
    assert "x" not in adjacency and "output" not in adjacency


def test_dedicated_modules_only_drops_functional_ops_and_reused_modules():
    adjacency = SummaryGraph(SharedRelu(), torch.randn(1, 3, 4, 4)).adjacency_map(dedicated_modules_only=True)
    assert list(adjacency) == ["conv1", "conv2"]
    assert adjacency["conv1"].successors == [] and adjacency["conv2"].predecessors == []
    full = SummaryGraph(SharedRelu(), torch.randn(1, 3, 4, 4)).adjacency_map()
    assert [op.name for op in full["conv2"].predecessors] == ["mul"]


def test_distiller_positional_arguments_and_scope_names():
    graph = SummaryGraph(TinyResidualNet(), torch.randn(1, 3, 8, 8), True)
    assert graph.find_op("block_conv2").type == "Conv2d"
    assert onnx_name_2_pytorch_name("ResNet/Sequential[layer3]/BasicBlock[0]/ReLU[relu]") == "layer3.0.relu"
    assert onnx_name_2_pytorch_name("Net/Linear[fc]") == "fc"
