"""Capture a model's data flow with ``torch.fx`` (symbolic tracing + shape propagation).

Only supported PyTorch APIs are used: :class:`torch.fx.Tracer` (with leaf modules) and
:class:`torch.fx.passes.shape_prop.ShapeProp`. A sub-module whose ``forward`` cannot be traced (Python
control flow on tensor values, unsupported calls) is retried as an opaque *leaf*: the graph then shows
one call of that module instead of its insides, and the reason is logged.
"""
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import UserError
from ..utils import model_device

msglogger = logging.getLogger(__name__)

__all__ = ["GraphCaptureError", "trace_model", "propagate_shapes", "eval_mode", "as_input_tuple",
           "zeros_like_inputs", "record_first_inputs"]


class GraphCaptureError(UserError, ValueError):
    """The model's forward pass cannot be captured as a graph."""


class _LeafTracer(fx.Tracer):
    """An fx tracer that treats chosen modules (by name or type) as leaves and remembers which module
    was being traced when an error happened."""

    def __init__(self, leaf_names=(), leaf_types=()):
        super().__init__()
        self.leaf_names = set(leaf_names)
        self.leaf_types = tuple(leaf_types)
        self._stack = []
        self.failed_stack = None

    def is_leaf_module(self, m, module_qualified_name):
        return (module_qualified_name in self.leaf_names or (self.leaf_types and isinstance(m, self.leaf_types))
                or super().is_leaf_module(m, module_qualified_name))

    def call_module(self, m, forward, args, kwargs):
        self._stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_stack is None:
                self.failed_stack = list(self._stack)
            raise
        finally:
            self._stack.pop()


@contextlib.contextmanager
def eval_mode(model):
    """Puts every module of ``model`` in eval mode and restores each one's own flag afterwards."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def trace_model(model: torch.nn.Module, leaf_modules: Iterable[Any] = ()) -> fx.GraphModule:
    """Symbolically traces ``model`` (in eval mode) into a :class:`torch.fx.GraphModule`.

    Args:
        model: the ``nn.Module`` (not DataParallel-wrapped).
        leaf_modules: module names and/or module classes to keep as opaque calls.
    Returns:
        a GraphModule sharing ``model``'s sub-modules and parameters.
    Raises:
        GraphCaptureError: when the model's own ``forward`` cannot be traced, with the tracer's error.
    """
    names = {m for m in leaf_modules if isinstance(m, str)}
    types = tuple(m for m in leaf_modules if isinstance(m, type))
    opaque: list[str] = []  # untraceable sub-modules, with the first one's error
    first_error = ""
    with eval_mode(model):
        while True:
            tracer = _LeafTracer(names, types)
            try:
                graph = tracer.trace(model)
                break
            except Exception as err:  # fx raises many types (TraceError, TypeError, RuntimeError...)
                culprit = tracer.failed_stack[-1] if tracer.failed_stack else None
                if culprit is None or culprit in names:
                    raise GraphCaptureError(
                        f"cannot trace {type(model).__name__}.forward with torch.fx: {err}. Make its forward "
                        f"traceable (no Python control flow on tensor values) or pass the offending "
                        f"sub-modules as leaf_modules") from err
                first_error = first_error or f"{type(err).__name__}: {err}"
                opaque.append(culprit)
                names.add(culprit)
    if opaque:
        shown = ", ".join(f"'{name}'" for name in opaque[:3]) + (f" and {len(opaque) - 3} more" if len(opaque) > 3
                                                               else "")
        msglogger.info("%d module(s) are not traceable by torch.fx and are kept as opaque calls: %s (%s)",
                       len(opaque), shown, first_error)
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def as_input_tuple(example_inputs, device):
    """Returns ``example_inputs`` (a tensor or a tuple/list of positional inputs) as a tuple on ``device``."""
    if isinstance(example_inputs, (tuple, list)):
        inputs = tuple(example_inputs)
    else:
        inputs = (example_inputs,)
    if not inputs:
        raise ValueError("example inputs are empty: pass a tensor (e.g. torch.randn(1, 3, 224, 224)) or a "
                         "tuple of the forward's positional arguments")
    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)


def record_first_inputs(model: torch.nn.Module, example_inputs: Any, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Runs ``model`` once on ``example_inputs`` (eval mode, no autograd) and returns name -> the first
    positional input tensor that each named sub-module received (modules not called are missing)."""
    recorded: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(name).register_forward_pre_hook(
        lambda _, args, name=name: recorded.setdefault(name, args[0].detach())) for name in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(*as_input_tuple(example_inputs, model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def zeros_like_inputs(inputs: tuple) -> tuple:
    """Zeros shaped like the tensors of ``inputs`` with a batch of one (other values unchanged): an example
    input recorded from a training batch, for capturing the graph later."""
    return tuple(torch.zeros((1,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
                 if isinstance(x, torch.Tensor) and x.dim() > 0 else x for x in inputs)


def propagate_shapes(graph_module, example_inputs):
    """Runs ``graph_module`` once (eval mode, no autograd) so every node's ``meta['tensor_meta']`` holds
    its output shape and dtype. Returns the model's output.

    Raises:
        GraphCaptureError: when the example input does not fit the model, naming the failing node.
    """
    inputs = as_input_tuple(example_inputs, model_device(graph_module))
    with eval_mode(graph_module), torch.no_grad():
        try:
            return ShapeProp(graph_module).propagate(*inputs)
        except Exception as err:
            shapes = [tuple(x.shape) for x in inputs if isinstance(x, torch.Tensor)]
            raise GraphCaptureError(f"running the model on example inputs of shape {shapes} failed: {err}. "
                                    f"Pass an input the model accepts (batch of one is enough)") from err
