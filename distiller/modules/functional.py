"""Turns functional tensor arithmetic inside a model's ``forward`` into ``distiller.modules`` instances.

Module-replacement quantizers only see modules, so ``out + identity`` or ``torch.cat(...)`` written in a
``forward`` would stay float. ``convert_functional_ops`` traces each user-defined module with
``torch.fx`` (its children kept as opaque calls) and replaces every tensor-tensor add, multiply,
divide, concatenation and matrix product by a new child module (``EltwiseAdd``, ``Concat``, ...),
named after the operation inside its owner (``layer1.0.add``); the module's ``forward`` becomes the code
torch.fx generates for the rewritten graph. The computation is unchanged, existing module and
parameter names are kept, and modules that torch.fx cannot trace are left as they were (their
children are still converted), as are modules whose ``forward`` has arguments defaulting to None (torch.fx
would fix the outcome of their ``is None`` checks at trace time).
"""
from __future__ import annotations

import inspect
import logging
import operator
from typing import Any, Optional

import torch
import torch.fx as fx
from torch import nn

from .eltwise import EltwiseAdd, EltwiseDiv, EltwiseMult
from .matmul import BatchMatmul, Matmul
from .tensor_ops import Concat

__all__ = ["convert_functional_ops", "find_functional_ops"]

logger = logging.getLogger(__name__)

# function -> (base name of the new module, factory(node) -> module)
_BINARY_OPS = {
    operator.add: ("add", EltwiseAdd), operator.iadd: ("add", EltwiseAdd), torch.add: ("add", EltwiseAdd),
    operator.mul: ("mul", EltwiseMult), operator.imul: ("mul", EltwiseMult), torch.mul: ("mul", EltwiseMult),
    operator.truediv: ("div", EltwiseDiv), torch.div: ("div", EltwiseDiv),
    operator.matmul: ("matmul", Matmul), torch.matmul: ("matmul", Matmul), torch.bmm: ("bmm", BatchMatmul),
}
_BINARY_METHODS = {"add": "add", "mul": "mul", "div": "div", "matmul": "matmul", "bmm": "bmm"}
_METHOD_MODULES = {"add": EltwiseAdd, "mul": EltwiseMult, "div": EltwiseDiv, "matmul": Matmul,
                   "bmm": BatchMatmul}
# Producers of shape/size values: arithmetic on them is integer bookkeeping, not tensor math.
_SHAPE_METHODS = {"size", "dim", "numel", "__len__"}
#: (base name of the new module, the module, the arguments its call takes)
_Replacement = tuple[str, nn.Module, tuple[Any, ...]]


class _ChildrenAreLeaves(fx.Tracer):
    """Traces only the root module's own ``forward``; every submodule stays one ``call_module`` node."""

    def __init__(self, root: nn.Module) -> None:
        super().__init__()
        self._root = root

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return module is not self._root


def _is_tensor_node(node: Any, memo: dict[fx.Node, bool]) -> bool:
    """Whether an fx value is (as far as the graph shows) a tensor rather than a size or number."""
    if not isinstance(node, fx.Node):
        return False
    if node not in memo:
        if node.op == "call_method" and node.target in _SHAPE_METHODS:
            memo[node] = False
        elif node.op == "placeholder" and node.type in (int, float, bool):  # forward(self, x, p: int)
            memo[node] = False
        elif node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim"):
            memo[node] = False
        elif node.op == "call_function" and (node.target in _BINARY_OPS or _is_operator(node.target)):
            memo[node] = any(_is_tensor_node(arg, memo) for arg in node.args)
        else:
            memo[node] = True
    return memo[node]


def _is_operator(target: Any) -> bool:
    """Whether ``target`` is a function of the ``operator`` module (``getitem``, ``floordiv``, ``sub``...), whose
    result is a tensor only if an operand is: ``h // p * (w // p)`` on sizes stays integer bookkeeping."""
    return getattr(operator, getattr(target, "__name__", ""), None) is target


def _replacement_for(node: fx.Node, memo: dict[fx.Node, bool]) -> Optional[_Replacement]:
    """Returns (base_name, module, args) when ``node`` should become a module call, else None."""
    if node.op == "call_function" and node.target in _BINARY_OPS and not node.kwargs:
        if len(node.args) == 2 and all(_is_tensor_node(arg, memo) for arg in node.args):
            base, cls = _BINARY_OPS[node.target]
            return base, cls(), node.args
    if node.op == "call_method" and node.target in _METHOD_MODULES and not node.kwargs:
        if len(node.args) == 2 and all(_is_tensor_node(arg, memo) for arg in node.args):
            return node.target, _METHOD_MODULES[node.target](), node.args
    if node.op == "call_function" and node.target is torch.cat:
        tensors, dim = _cat_arguments(node)
        if isinstance(tensors, (list, tuple)) and isinstance(dim, int) and all(isinstance(t, fx.Node)
                                                                              for t in tensors):
            return "cat", Concat(dim), tuple(tensors)
    return None


def _cat_arguments(node: fx.Node) -> tuple[Any, Any]:
    """``(tensors, dim)`` of a ``torch.cat`` call node, read from its current arguments."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return tensors, dim


def _is_user_module(module: nn.Module) -> bool:
    """Modules whose ``forward`` we trace: not torch's own layers, not ``distiller.modules``."""
    qualified = type(module).__module__
    return not (qualified.startswith("torch.") or qualified.startswith(__package__ + "."))


def _trace(module: nn.Module) -> Optional[fx.Graph]:
    """The fx graph of ``module``'s own forward (a copy for GraphModules), or None if untraceable."""
    if isinstance(module, fx.GraphModule):
        graph = fx.Graph()
        graph.output(graph.graph_copy(module.graph, {}))
        return graph
    if not _is_user_module(module):
        return None
    optional = [name for name, parameter in inspect.signature(module.forward).parameters.items()
                if parameter.default is None]
    if optional:  # torch.fx traces `arg is None` as False: the generated forward would fail on a None
        logger.debug("convert_functional_ops: %s.forward has arguments defaulting to None (%s), whose checks "
                     "torch.fx cannot keep; left as is", type(module).__name__, ", ".join(optional))
        return None
    tracer = _ChildrenAreLeaves(module)
    try:
        return tracer.trace(module)
    except Exception as err:  # torch.fx raises many types for untraceable code (control flow, ...)
        logger.debug("convert_functional_ops: %s is not traceable by torch.fx (%s); left as is",
                     type(module).__name__, err)
        return None


def _planned_replacements(graph: fx.Graph) -> list[tuple[fx.Node, _Replacement]]:
    memo: dict[fx.Node, bool] = {}
    return [(node, found) for node in graph.nodes if (found := _replacement_for(node, memo)) is not None]


def _unique_name(module: nn.Module, base: str, taken: set[str]) -> str:
    name, index = base, 1
    while hasattr(module, name) or name in taken:
        name, index = f"{base}_{index}", index + 1
    taken.add(name)
    return name


def _rewrite(module: nn.Module, graph: fx.Graph, replacements: list[tuple[fx.Node, _Replacement]]) -> nn.Module:
    """Makes ``module`` compute ``graph`` in which each planned op became a call of a new child module.

    The module keeps its identity, attributes and names; its class is swapped for a subclass whose
    ``forward`` is the code torch.fx generates for the rewritten graph.
    """
    taken: set[str] = set()
    for node, (base, new_module, _) in replacements:
        name = _unique_name(module, base, taken)
        module.add_module(name, new_module.train(module.training))
        # re-read the arguments: earlier replacements may have rewired them
        args = tuple(_cat_arguments(node)[0]) if node.target is torch.cat else node.args
        with graph.inserting_before(node):
            call = graph.call_module(name, args=tuple(args))
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    graph.lint()
    if isinstance(module, fx.GraphModule):
        module.graph = graph  # the setter regenerates forward
        return module
    generated = fx.GraphModule(module, graph)
    for node in graph.nodes:  # tensor constants torch.fx lifted into attributes
        if node.op == "get_attr" and "." not in node.target and not hasattr(module, node.target):
            setattr(module, node.target, getattr(generated, node.target))
    cls = type(module)
    module.__class__ = type(cls.__name__, (cls,), {"forward": type(generated).forward,
                                                   "__module__": cls.__module__,
                                                   "__doc__": cls.__doc__,
                                                   "_distiller_fx_converted": True})
    return module


def find_functional_ops(model: nn.Module) -> list[tuple[str, str]]:
    """Lists the functional ops ``convert_functional_ops`` would replace, without changing the model.

    Returns:
        list of ``(owner_module_name, op_base_name)`` in model order, e.g. ``[('layer1.0', 'add')]``.
    """
    found: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        graph = _trace(module)
        if graph is not None:
            found.extend((name, base) for _, (base, _, _) in _planned_replacements(graph))
    return found


def convert_functional_ops(model: nn.Module) -> nn.Module:
    """Replaces functional adds, products, divisions, concatenations and matmuls by modules, in place.

    Every user-defined module whose ``forward`` contains such ops gets new ``distiller.modules``
    children (``add``, ``cat_1``, ...) and a ``forward`` generated by torch.fx that calls them (its class
    becomes a subclass of the original one). The float computation is unchanged and all existing
    module/parameter/buffer names are kept. Values that torch.fx bakes in at trace time (e.g.
    ``self.training`` passed to a functional dropout) stay as they were when converting.

    Args:
        model: the model; converted in place.
    Returns:
        ``model``.
    Example:
        >>> convert_functional_ops(model)   # resnet blocks now have an ``add`` EltwiseAdd child
    """
    for child in model.children():
        convert_functional_ops(child)
    graph = _trace(model)
    if graph is None:
        return model
    replacements = _planned_replacements(graph)
    if not replacements:
        return model
    logger.debug("convert_functional_ops: %s: %d functional op(s) -> modules", type(model).__name__,
                 len(replacements))
    return _rewrite(model, graph, replacements)
