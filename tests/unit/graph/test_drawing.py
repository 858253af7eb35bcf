"""Graph drawings (Distiller's create_pydot_graph, create_png, draw_model_to_file, draw_img_classifier_to_file):
the pydot graph's nodes, edges, labels and styles, the .dot source, and Graphviz's absence as a clear error."""
import shutil

import pydot
import pytest
import torch
from torch import nn

import distiller
from distiller.errors import ArgumentError, MissingDependencyError
from distiller.graph import SummaryGraph
from distiller.graph.drawing import summary_graph_to_pydot
from distiller.testing import TinyCNN

# pydot's DOT parser uses pyparsing names that pyparsing deprecates; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:'setParseAction' deprecated")
needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot program")


def _nodes(graph):
    """node id -> attributes, ids unquoted."""
    return {node.get_name().strip('"'): node.get_attributes() for node in graph.get_nodes()}


def _edges(graph):
    return [(edge.get_source().strip('"'), edge.get_destination().strip('"')) for edge in graph.get_edges()]


def _label(attributes):
    """The label's lines, from a built graph (newlines) or a parsed one (escaped newlines)."""
    return attributes["label"].strip('"').replace("\\n", "\n").split("\n")


@pytest.fixture
def no_graphviz(monkeypatch):
    """Graphviz's dot is not on PATH, whether or not this machine has it."""
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else real_which(name, *a, **k))


@pytest.fixture
def sgraph():
    return SummaryGraph(TinyCNN(), torch.randn(1, 3, 8, 8))


class TwiceFC(nn.Module):
    """One Linear module called twice: its parameters feed both calls."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


def test_create_pydot_graph_builds_labelled_nodes_and_edges():
    graph = distiller.create_pydot_graph(
        [("conv1", "Conv2d", "(1, 8, 8, 8)"), ("fc", "Linear")], [("x", "x", "(1, 3, 8, 8)")],
        [("conv1.weight", "(8, 3, 3, 3)")], [("x", "conv1"), ("conv1", "fc"), ("conv1.weight", "conv1")],
        rankdir="LR")
    nodes = _nodes(graph)
    assert list(nodes) == ["conv1", "fc", "x", "conv1.weight"]
    assert _label(nodes["conv1"]) == ["conv1", "Conv2d", "(1, 8, 8, 8)"]   # ops: every line
    assert _label(nodes["x"]) == ["x", "(1, 3, 8, 8)"]                      # data: the lines after the id
    assert _label(nodes["conv1.weight"]) == ["(8, 3, 3, 3)"]
    assert nodes["conv1"]["shape"] == "box" and nodes["conv1.weight"]["fillcolor"] == "gray"
    assert _edges(graph) == [("x", "conv1"), ("conv1", "fc"), ("conv1.weight", "conv1")]
    assert graph.get_rankdir() == "LR"


def test_styles_by_type_or_name_replace_the_defaults_they_name():
    styles = {"Conv2d": {"fillcolor": "orange"}, "conv2": {"shape": "oval"}, "x": {"color": "red"}}
    graph = distiller.create_pydot_graph(
        [("conv1", "Conv2d"), ("conv2", "Conv2d"), ("fc", "Linear")], [("x", "x")], None, [], styles=styles)
    nodes = _nodes(graph)
    assert nodes["conv1"]["fillcolor"] == "orange" and nodes["conv1"]["shape"] == "box"
    assert nodes["conv2"]["shape"] == "oval" and nodes["conv2"]["fillcolor"] == "#6495ED"  # the name wins
    assert nodes["fc"]["fillcolor"] == "#6495ED" and nodes["x"]["color"] == "red"


@pytest.mark.parametrize("kwargs, match", [
    (dict(rankdir="TD"), "rankdir 'TD' is not a Graphviz direction"),
    (dict(styles=[("Conv2d", {})]), "styles must map node names or op types"),
    (dict(styles={"Conv2d": "orange"}), r"styles\['Conv2d'\] must be a dict"),
])
def test_bad_rankdir_and_styles_are_argument_errors(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        distiller.create_pydot_graph([("conv1", "Conv2d")], [], None, [], **kwargs)


def test_edges_must_join_given_nodes_and_descriptions_must_be_tuples():
    with pytest.raises(ArgumentError, match="edge x -> conv names no node 'conv'; did you mean 'conv1'"):
        distiller.create_pydot_graph([("conv1", "Conv2d")], [("x",)], None, [("x", "conv")])
    with pytest.raises(ArgumentError, match="each edge must be a .source id, destination id. pair"):
        distiller.create_pydot_graph([("conv1", "Conv2d")], [("x",)], None, [("x", "conv1", "fc")])
    with pytest.raises(ArgumentError, match="each of op_nodes_desc must be a tuple"):
        distiller.create_pydot_graph(["conv1"], [], None, [])


def test_ids_with_dot_syntax_characters_survive_the_source():
    # unquoted, DOT reads 'enc:0' as node 'enc', port '0'
    graph = distiller.create_pydot_graph([("enc:0", "Linear")], [("x",)], None, [("x", "enc:0")])
    (parsed,) = pydot.graph_from_dot_data(graph.to_string())
    assert list(_nodes(parsed)) == ["enc:0", "x"] and _edges(parsed) == [("x", "enc:0")]


def test_summary_graph_drawing_has_every_op_and_data_flow(sgraph):
    graph = summary_graph_to_pydot(sgraph, rankdir="BT")
    nodes = _nodes(graph)
    assert list(nodes) == [name for name in sgraph.ops if name not in ("x", "output")] + ["x", "output"]
    assert _label(nodes["conv1"]) == ["conv1", "Conv2d", "(1, 8, 8, 8)", "k=3x3"]
    assert _label(nodes["x"]) == ["x", "(1, 3, 8, 8)"] and nodes["x"]["shape"] == "oval"
    assert _edges(graph) == [(source, op.name) for op in sgraph for source in op.inputs]
    assert ("relu2", "adaptive_avg_pool2d") in _edges(graph) and graph.get_rankdir() == "BT"


def test_param_nodes_are_drawn_only_when_asked_and_feed_every_call():
    sgraph = SummaryGraph(TwiceFC(), torch.randn(1, 4))
    assert not {"fc.weight", "fc.bias"} & set(_nodes(summary_graph_to_pydot(sgraph)))
    graph = summary_graph_to_pydot(sgraph, display_param_nodes=True)
    assert _label(_nodes(graph)["fc.weight"]) == ["fc.weight", "(4, 4)"]
    assert {edge for edge in _edges(graph) if edge[0].startswith("fc.")} == {
        ("fc.weight", "fc"), ("fc.weight", "fc__1"), ("fc.bias", "fc"), ("fc.bias", "fc__1")}


def test_grouped_convolution_label_shows_groups():
    sgraph = SummaryGraph(nn.Sequential(nn.Conv2d(4, 8, (3, 1), groups=2)), torch.randn(1, 4, 6, 6))
    assert _label(_nodes(summary_graph_to_pydot(sgraph))["0"]) == ["0", "Conv2d", "(1, 8, 4, 6)", "k=3x1", "g=2"]


@pytest.mark.parametrize("extension", [".dot", ".gv"])
def test_dot_file_parses_back_without_graphviz(sgraph, tmp_path, no_graphviz, extension):
    path = tmp_path / f"tiny{extension}"
    distiller.draw_model_to_file(sgraph, path, rankdir="LR", styles={"Linear": {"shape": "oval"}})
    (graph,) = pydot.graph_from_dot_file(str(path))
    nodes = _nodes(graph)
    assert {"conv1", "conv2", "fc"} <= set(nodes) and nodes["fc"]["shape"] == "oval"
    assert graph.get_rankdir() == "LR" and ("flatten", "fc") in _edges(graph)


def test_images_without_graphviz_are_a_missing_dependency(sgraph, tmp_path, no_graphviz):
    with pytest.raises(MissingDependencyError, match=r"Graphviz's 'dot'.*apt install graphviz.*'\.dot' file"):
        distiller.create_png(sgraph)
    for extension in (".png", ".svg", ".pdf"):
        with pytest.raises(MissingDependencyError, match="Graphviz"):
            distiller.draw_model_to_file(sgraph, tmp_path / f"tiny{extension}")
    assert not list(tmp_path.iterdir())


def test_an_unknown_extension_lists_the_supported_ones(sgraph, tmp_path):
    with pytest.raises(ArgumentError, match=r"'.*tiny\.jpg'.*one of \['\.dot', '\.gv', '\.png', '\.svg', '\.pdf'\]"):
        distiller.draw_model_to_file(sgraph, tmp_path / "tiny.jpg")


@needs_graphviz
def test_images_are_rendered_with_graphviz(sgraph, tmp_path):
    assert distiller.create_png(sgraph, display_param_nodes=True).startswith(b"\x89PNG\r\n\x1a\n")
    distiller.draw_model_to_file(sgraph, tmp_path / "tiny.svg", styles={"Conv2d": {"fillcolor": "orange"}})
    assert "<svg" in (tmp_path / "tiny.svg").read_text() and "conv1" in (tmp_path / "tiny.svg").read_text()


def test_draw_img_classifier_to_file_uses_the_datasets_input_shape(tmp_path):
    model = distiller.models.create_model(False, "cifar10", "simplenet_cifar")
    path = tmp_path / "simplenet.dot"
    distiller.draw_img_classifier_to_file(model, path, dataset="cifar10", display_param_nodes=True)
    nodes = _nodes(pydot.graph_from_dot_file(str(path))[0])
    assert {"conv1", "conv2", "fc1", "fc2", "fc3", "conv1.weight"} <= set(nodes)
    assert _label(nodes["x"]) == ["x", "(1, 3, 32, 32)"] and _label(nodes["conv1"])[2] == "(1, 6, 28, 28)"


def test_draw_img_classifier_to_file_takes_an_input_shape_or_a_dataset(tmp_path):
    path = tmp_path / "tiny.dot"
    distiller.draw_img_classifier_to_file(TinyCNN(), path, input_shape=(1, 3, 5, 5))
    assert _label(_nodes(pydot.graph_from_dot_file(str(path))[0])["x"]) == ["x", "(1, 3, 5, 5)"]
    with pytest.raises(ArgumentError, match="exactly one of dataset"):
        distiller.draw_img_classifier_to_file(TinyCNN(), tmp_path / "none.dot")


def test_draw_img_classifier_to_file_checks_its_arguments_before_tracing(tmp_path, no_graphviz):
    class Untraceable(nn.Module):
        def forward(self, x):
            raise AssertionError("the model must not run")
    with pytest.raises(MissingDependencyError):
        distiller.draw_img_classifier_to_file(Untraceable(), tmp_path / "m.png", dataset="cifar10")
    with pytest.raises(ArgumentError, match="rankdir"):
        distiller.draw_img_classifier_to_file(Untraceable(), tmp_path / "m.dot", dataset="cifar10", rankdir="up")
