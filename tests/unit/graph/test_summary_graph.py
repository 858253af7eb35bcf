"""SummaryGraph: ops and names, adjacency searches, shapes, costs, leaf fallback, clear capture errors."""
import logging

import pytest
import torch
from torch import nn

from distiller.graph import GraphCaptureError, SummaryGraph
from distiller.summaries import model_macs
from distiller.testing import TinyResidualNet


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SharedRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.relu(x + 1)
        return self.fc(x.mean([2, 3]))


def test_ops_are_named_typed_and_shaped():
    graph = SummaryGraph(SharedRelu(), torch.randn(1, 3, 8, 8))
    assert list(graph.ops) == ["x", "conv", "bn", "relu", "add", "relu__1", "mean", "fc", "output"]
    assert [graph.op(n).kind for n in ("x", "conv", "add", "mean", "output")] == [
        "input", "module", "function", "method", "output"]
    assert graph.op("conv").type == "Conv2d" and graph.op("add").type == "add"
    assert graph.op("bn").shape == (1, 4, 8, 8) and graph.op("mean").shape == (1, 4)
    assert graph.module_ops("relu") == ["relu", "relu__1"] and graph.module_name("relu__1") == "relu"
    assert graph.layers_topological_order() == ["conv", "bn", "relu", "fc"]
    assert graph.input_shape("fc") == (1, 4)


def test_adjacency_and_type_searches():
    graph = SummaryGraph(TinyResidualNet(), torch.randn(1, 3, 8, 8))
    assert graph.successors_f("conv1", "BatchNorm2d") == ["bn1"]
    assert graph.successors("bn1") == ["relu"]
    assert set(graph.successors_f("conv1", "Conv2d")) == {"block_conv1"}
    assert set(graph.predecessors_f("fc", "Conv2d")) == {"block_conv2", "conv1"}
    assert graph.predecessors("add") == ["block_bn2", "relu"]
    assert graph.successors("conv1", depth=2) == ["relu"]


def test_macs_match_the_hook_based_summary():
    model = TinyResidualNet()
    x = torch.randn(1, 3, 8, 8)
    graph = SummaryGraph(model, x)
    assert graph.macs("conv1") == 8 * 8 * 8 * 3 * 9
    assert graph.total_macs() == model_macs(model, x)
    assert graph.module_params()["conv1"] == 8 * 3 * 9
    assert [name for _, name, _ in graph.named_params_layers()][:2] == ["conv1.weight", "bn1.weight"]


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x   # data-dependent: fx cannot trace it


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


def test_untraceable_submodules_become_opaque_calls(caplog):
    with caplog.at_level(logging.INFO, logger="distiller.graph"):
        graph = SummaryGraph(Gated(), torch.randn(1, 3, 4, 4))
    assert graph.op("gate").type == "Gate" and graph.op("gate").shape == (1, 4, 4, 4)
    assert "1 module(s) are not traceable by torch.fx and are kept as opaque calls: 'gate' (" in caplog.text


class ManyGates(nn.Module):
    def __init__(self):
        super().__init__()
        self.gates = nn.ModuleList(Gate() for _ in range(5))

    def forward(self, x):
        for gate in self.gates:
            x = gate(x)
        return x


def test_many_untraceable_submodules_are_reported_in_one_line(caplog):
    """A QAT model has one untraceable fake quantization per activation: one line, not one per module."""
    with caplog.at_level(logging.INFO, logger="distiller.graph"):
        SummaryGraph(ManyGates(), torch.randn(1, 3, 4, 4))
    lines = [r.getMessage() for r in caplog.records if "not traceable" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("5 module(s) are not traceable")
    assert "'gates.0', 'gates.1', 'gates.2' and 2 more" in lines[0]


def test_untraceable_forward_and_bad_inputs_are_clear_errors():
    with pytest.raises(GraphCaptureError, match="leaf_modules"):
        SummaryGraph(Gate(), torch.randn(1, 3))
    with pytest.raises(GraphCaptureError, match=r"shape \[\(1, 5, 8, 8\)\]"):
        SummaryGraph(TinyResidualNet(), torch.randn(1, 5, 8, 8))


def test_capture_leaves_the_model_as_it_was():
    model = TinyResidualNet().train()
    model.bn1.eval()
    stats = model.bn1.running_mean.clone(), model.block_bn1.running_mean.clone()
    SummaryGraph(nn.DataParallel(model), torch.randn(2, 3, 8, 8))
    assert model.training and not model.bn1.training and model.block_bn1.training
    assert torch.equal(stats[0], model.bn1.running_mean) and torch.equal(stats[1], model.block_bn1.running_mean)


def test_unknown_op_names_suggest_close_ones():
    graph = SummaryGraph(TinyResidualNet(), torch.randn(1, 3, 8, 8))
    assert graph.find_op("nope") is None
    with pytest.raises(KeyError, match="did you mean 'conv1'"):
        graph.op("conv_1")
