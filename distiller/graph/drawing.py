"""Drawings of a :class:`~distiller.graph.SummaryGraph` with Graphviz: Distiller's ``create_pydot_graph``,
``create_png``, ``draw_model_to_file`` and ``draw_img_classifier_to_file``.

The drawing is built as a ``pydot.Dot`` object, which needs only the ``pydot`` package, and its Graphviz
source can be written to a ``.dot`` file on any machine. Rendering an image (PNG, SVG, PDF) runs Graphviz's
``dot`` program, which is installed separately (``apt install graphviz``, ``conda install graphviz``).

Each op is a blue box labelled with its name, its type (module class, or function/method name) and its output
shape; convolutions and pooling layers also show their kernel size (``k=3x3``) and group count (``g=2``, when
above one). The model's inputs and output are ovals; with ``display_param_nodes``, the parameters of every
called module are grey ovals feeding each of its calls.

Example:
    >>> draw_img_classifier_to_file(model, 'simplenet.dot', dataset='cifar10')  # no Graphviz needed
    >>> draw_img_classifier_to_file(model, 'simplenet.png', dataset='cifar10', rankdir='LR',
    ...                             styles={'Conv2d': {'fillcolor': 'orange'}})
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union, cast

import pydot
from torch import nn

from ..errors import ArgumentError, MissingDependencyError, suggest
from ..model_tools import NestedShape, get_dummy_input
from ..pyutils import size_to_str
from ..utils import model_device
from .summary_graph import Op, SummaryGraph

__all__ = ["create_pydot_graph", "summary_graph_to_pydot", "create_png", "draw_model_to_file",
           "draw_img_classifier_to_file", "dot_program", "RANKDIRS", "FILE_FORMATS"]

#: Graphviz's layout directions: top to bottom, bottom to top, left to right, right to left.
RANKDIRS = ("TB", "BT", "LR", "RL")
#: file extension -> Graphviz output format (None: the Graphviz source, written without Graphviz).
FILE_FORMATS: dict[str, Optional[str]] = {".dot": None, ".gv": None, ".png": "png", ".svg": "svg", ".pdf": "pdf"}

_OP_STYLE = {"shape": "box", "style": "rounded, filled", "fillcolor": "#6495ED"}
_DATA_STYLE = {"shape": "oval"}
_PARAM_STYLE = {"shape": "oval", "style": "filled", "fillcolor": "gray"}
_DATA_KINDS = ("input", "attribute", "output")

#: node name or op type -> Graphviz node attributes
Styles = Mapping[str, Mapping[str, Any]]


def _check_rankdir(rankdir: str) -> None:
    if rankdir not in RANKDIRS:
        raise ArgumentError(f"rankdir {rankdir!r} is not a Graphviz direction; use one of {list(RANKDIRS)}",
                            argument="rankdir")


def _check_styles(styles: Optional[Styles]) -> Styles:
    if styles is None:
        return {}
    example = "e.g. {'Conv2d': {'fillcolor': 'orange'}}"
    if not isinstance(styles, Mapping):
        raise ArgumentError(f"styles must map node names or op types to Graphviz node attributes ({example}), "
                            f"got {type(styles).__name__}", argument="styles")
    for key, style in styles.items():
        if not isinstance(style, Mapping):
            raise ArgumentError(f"styles[{key!r}] must be a dict of Graphviz node attributes ({example}), "
                                f"got {type(style).__name__}", argument="styles", location=(key,))
    return styles


def _check_output(fname: Union[str, os.PathLike]) -> Optional[str]:
    """The Graphviz format that the extension of ``fname`` asks for (None: the source); checks that the
    ``dot`` program is there when the format needs it."""
    extension = os.path.splitext(os.fspath(fname))[1].lower()
    if extension not in FILE_FORMATS:
        raise ArgumentError(f"cannot draw the graph to '{os.fspath(fname)}': the file extension must be one of "
                            f"{list(FILE_FORMATS)}", argument="png_fname")
    image_format = FILE_FORMATS[extension]
    if image_format is not None:
        dot_program()
    return image_format


def dot_program() -> str:
    """The path of Graphviz's ``dot`` program.

    Raises:
        MissingDependencyError: ``dot`` is not on ``PATH``.
    """
    program = shutil.which("dot")
    if program is None:
        raise MissingDependencyError(
            "drawing the graph as an image needs Graphviz's 'dot' program, which is not on PATH: install "
            "Graphviz (e.g. 'apt install graphviz' or 'conda install graphviz'), or write a '.dot' file, which "
            "needs no Graphviz")
    return program


def _quoted(node_id: str) -> str:
    # quoted ids keep characters that DOT would read as syntax, e.g. ':' as a port separator
    return '"' + str(node_id).replace('"', '\\"') + '"'


def _lines(description: Any, what: str) -> list[str]:
    if isinstance(description, str) or not isinstance(description, Sequence) or not description:
        raise ArgumentError(f"each of {what} must be a tuple (id, label lines...), got {description!r}",
                            argument=what)
    return [str(line) for line in description]


def create_pydot_graph(op_nodes_desc: Iterable[Sequence[str]], data_nodes: Iterable[Sequence[str]],
                       param_nodes: Optional[Iterable[Sequence[str]]], edges: Iterable[Sequence[str]],
                       rankdir: str = "TB", styles: Optional[Styles] = None) -> pydot.Dot:
    """A Graphviz digraph (``pydot.Dot`` named ``'Net'``) of op, data and parameter nodes.

    Args:
        op_nodes_desc: one ``(name, type, *more label lines)`` per op; the label shows every line.
        data_nodes: one ``(id, *label lines)`` per data tensor (model inputs and outputs); the label shows the
            lines after the id (the id alone when there are none).
        param_nodes: parameters, like ``data_nodes``; None for none.
        edges: ``(source id, destination id)`` pairs (or anything that unpacks so, like Distiller's ``Edge``).
        rankdir: the layout direction, one of :data:`RANKDIRS`.
        styles: node id or op type -> Graphviz node attributes replacing the defaults, e.g.
            ``{'Conv2d': {'fillcolor': 'orange'}, 'fc': {'shape': 'oval'}}``; an id takes precedence over a type.
    Returns:
        the graph (``graph.to_string()`` is its Graphviz source).
    Raises:
        ArgumentError: an unknown ``rankdir``, ``styles`` not a mapping of mappings, a node description that
            is not a non-empty tuple, or an edge naming a node that is not given.
    """
    _check_rankdir(rankdir)
    styles = _check_styles(styles)
    graph = pydot.Dot("Net", graph_type="digraph", rankdir=rankdir)
    node_ids = set()
    groups = (("op_nodes_desc", op_nodes_desc, _OP_STYLE), ("data_nodes", data_nodes, _DATA_STYLE),
              ("param_nodes", param_nodes or (), _PARAM_STYLE))
    for what, descriptions, default_style in groups:
        for description in descriptions:
            lines = _lines(description, what)
            is_op = what == "op_nodes_desc"
            label = lines if is_op else lines[1:] or lines
            style_keys = lines[:2] if is_op else lines[:1]  # the id, then an op's type
            style = next((styles[key] for key in style_keys if key in styles), {})
            graph.add_node(pydot.Node(_quoted(lines[0]), **{**default_style, **style}, label="\n".join(label)))
            node_ids.add(lines[0])
    for edge in edges:
        try:
            source, destination = (str(end) for end in edge)
        except (TypeError, ValueError):
            raise ArgumentError(f"each edge must be a (source id, destination id) pair, got {edge!r}",
                                argument="edges") from None
        for end in (source, destination):
            if end not in node_ids:
                hint = suggest(end, node_ids)
                raise ArgumentError(f"edge {source} -> {destination} names no node '{end}'"
                                    + (f"; did you mean {hint}?" if hint else ""), argument="edges")
        graph.add_edge(pydot.Edge(_quoted(source), _quoted(destination)))
    return graph


def _shapes(op: Op) -> list[str]:
    return [", ".join(size_to_str(shape) for shape in op.output_shapes)] if op.output_shapes else []


def _op_description(op: Op) -> tuple[str, ...]:
    lines = [op.name, op.type, *_shapes(op)]
    kernel = getattr(op.module, "kernel_size", None)
    if kernel is not None:
        lines.append("k=" + ("x".join(str(k) for k in kernel) if isinstance(kernel, Sequence) else str(kernel)))
    groups = getattr(op.module, "groups", 1)
    if isinstance(groups, int) and groups > 1:
        lines.append(f"g={groups}")
    return tuple(lines)


def summary_graph_to_pydot(sgraph: SummaryGraph, display_param_nodes: bool = False, rankdir: str = "TB",
                           styles: Optional[Styles] = None) -> pydot.Dot:
    """The drawing of ``sgraph`` as a ``pydot.Dot`` (see the module docstring; arguments as
    :func:`create_png`). Needs no Graphviz."""
    op_nodes = [_op_description(op) for op in sgraph if op.kind not in _DATA_KINDS]
    data_nodes = [(op.name, op.name, *_shapes(op)) for op in sgraph if op.kind in _DATA_KINDS]
    edges = [(source, op.name) for op in sgraph for source in op.inputs]
    param_nodes = []
    if display_param_nodes:
        for module_name, param_name, param in sgraph.named_params_layers():
            param_nodes.append((param_name, param_name, size_to_str(param.shape)))
            edges.extend((param_name, op_name) for op_name in sgraph.module_ops(module_name))
    return create_pydot_graph(op_nodes, data_nodes, param_nodes, edges, rankdir, styles)


def _render(sgraph: SummaryGraph, image_format: str, display_param_nodes: bool, rankdir: str,
            styles: Optional[Styles]) -> bytes:
    program = dot_program()
    graph = summary_graph_to_pydot(sgraph, display_param_nodes, rankdir, styles)
    # pydot annotates create() as returning str; it returns the program's output bytes
    return cast(bytes, graph.create(prog=program, format=image_format))


def create_png(sgraph: SummaryGraph, display_param_nodes: bool = False, rankdir: str = "TB",
               styles: Optional[Styles] = None) -> bytes:
    """A PNG image (bytes) of the drawing of ``sgraph``, rendered by Graphviz's ``dot``.

    Args:
        sgraph: the graph.
        display_param_nodes: also draw the parameters of every called module.
        rankdir: the layout direction, one of :data:`RANKDIRS`.
        styles: node attributes by node name or op type (see :func:`create_pydot_graph`).
    Raises:
        MissingDependencyError: Graphviz's ``dot`` is not installed.
        ArgumentError: a bad ``rankdir`` or ``styles``.
    """
    return _render(sgraph, "png", display_param_nodes, rankdir, styles)


def draw_model_to_file(sgraph: SummaryGraph, png_fname: Union[str, os.PathLike], display_param_nodes: bool = False,
                       rankdir: str = "TB", styles: Optional[Styles] = None) -> None:
    """Writes the drawing of ``sgraph`` to ``png_fname``, in the format its extension names (see
    :data:`FILE_FORMATS`): ``.dot``/``.gv`` write the Graphviz source (no Graphviz needed), ``.png``, ``.svg``
    and ``.pdf`` an image rendered by Graphviz's ``dot``. Other arguments as :func:`create_png` (Distiller
    ignored ``rankdir`` and ``styles`` here).

    Raises:
        ArgumentError: an unsupported extension, a bad ``rankdir`` or ``styles``.
        MissingDependencyError: an image format without Graphviz's ``dot`` installed.
    """
    image_format = _check_output(png_fname)
    if image_format is None:
        content = summary_graph_to_pydot(sgraph, display_param_nodes, rankdir, styles).to_string().encode()
    else:
        content = _render(sgraph, image_format, display_param_nodes, rankdir, styles)
    with open(png_fname, "wb") as f:
        f.write(content)


def draw_img_classifier_to_file(model: nn.Module, png_fname: Union[str, os.PathLike], dataset: Optional[str] = None,
                                display_param_nodes: bool = False, rankdir: str = "TB",
                                styles: Optional[Styles] = None, input_shape: Optional[NestedShape] = None) -> None:
    """Draws ``model`` to ``png_fname`` (format by extension, see :func:`draw_model_to_file`), its graph
    captured from a random input of ``dataset``'s image shape or of ``input_shape``.

    Args:
        model: the model (not changed; it runs once in eval mode).
        png_fname: the output file.
        dataset: ``'cifar10'``, ``'digits'``, ``'mnist'`` or ``'imagenet'``: the input shape.
        display_param_nodes, rankdir, styles: as :func:`create_png`.
        input_shape: instead of ``dataset``, the input shape with its batch dimension, e.g. ``(1, 3, 32, 32)``.
    Raises:
        ArgumentError: neither or both of ``dataset`` and ``input_shape``, an unknown dataset, an unsupported
            extension, a bad ``rankdir`` or ``styles``.
        MissingDependencyError: an image format without Graphviz's ``dot`` installed.
        GraphCaptureError: the model cannot be traced or does not run on the input.
    """
    _check_output(png_fname)
    _check_rankdir(rankdir)
    _check_styles(styles)
    dummy_input = get_dummy_input(dataset, model_device(model), input_shape)
    draw_model_to_file(SummaryGraph(model, dummy_input), png_fname, display_param_nodes, rankdir, styles)
