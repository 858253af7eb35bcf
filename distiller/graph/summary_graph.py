"""``SummaryGraph``: a model's operations, their data flow, shapes and costs, from one example input.

The graph is captured with ``torch.fx`` (see :mod:`distiller.graph.capture`). Each fx node becomes an
:class:`Op`: module calls (``Conv2d``, ``BatchNorm2d``, ...), functional calls (``add``, ``cat``,
``flatten``, ``adaptive_avg_pool2d``, ``mul``...), tensor methods (``view``, ``chunk``, ``size``...), the
model's inputs and its output. Module calls are named by the module's qualified name (``layer1.0.conv1``;
repeated calls of one module get ``__1``, ``__2``... suffixes); other ops keep fx's names (``add_1``).

Example:
    >>> g = SummaryGraph(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224))
    >>> g.successors_f('layer1.0.conv1', 'BatchNorm2d')
    ['layer1.0.bn1']
    >>> g.op('layer1.0.conv1').shape, g.macs('layer1.0.conv1')
    ((1, 64, 56, 56), 115605504)
"""
import collections

from ..errors import suggest
from ..utils import model_is_parallel
from .adjacency import adjacency_map
from .capture import propagate_shapes, trace_model
from .cost import module_macs, module_params

__all__ = ["Op", "SummaryGraph"]

_KINDS = {"placeholder": "input", "call_module": "module", "call_function": "function",
          "call_method": "method", "get_attr": "attribute", "output": "output"}


class Op:
    """One operation of a :class:`SummaryGraph`.

    Attributes:
        name: unique op name (the module's qualified name for module calls).
        kind: ``'input'``, ``'module'``, ``'function'``, ``'method'``, ``'attribute'`` or ``'output'``.
        type: the module class name (``'Conv2d'``), function or method name (``'add'``, ``'view'``), or
            ``'input'``/``'attribute'``/``'output'``.
        target: the fx target: module name, callable, method name or attribute path.
        module_name / module: the called module (module ops only, else None).
        inputs / outputs: names of the ops this op reads from / whose inputs it feeds.
        output_shapes: shapes (tuples, batch first) of the tensors the op returns: one for a tensor, several
            for a tuple of tensors (``chunk``, ``split``), none for non-tensor results.
        dtype: dtype of the (first) output tensor, or None.
        node: the underlying :class:`torch.fx.Node` (its ``args``/``kwargs`` hold the call's arguments).
    """
    __slots__ = ("name", "kind", "type", "target", "module_name", "module", "inputs", "outputs",
                 "output_shapes", "dtype", "node")

    def __init__(self, name, kind, type_name, target, module_name, module, output_shapes, dtype, node):
        self.name, self.kind, self.type, self.target = name, kind, type_name, target
        self.module_name, self.module, self.node = module_name, module, node
        self.output_shapes, self.dtype = output_shapes, dtype
        self.inputs, self.outputs = [], []

    @property
    def shape(self):
        """The output shape when the op returns exactly one tensor, else None."""
        return self.output_shapes[0] if len(self.output_shapes) == 1 else None

    def __repr__(self):
        return f"Op({self.name!r}, {self.type}, shape={self.shape}, inputs={self.inputs})"


def _tensor_metas(meta):
    """TensorMetadata entries found in a node's ``meta['tensor_meta']`` (tensor or nested tuple)."""
    if meta is None:
        return []
    if hasattr(meta, "shape") and hasattr(meta, "dtype"):
        return [meta]
    if isinstance(meta, (tuple, list)):
        return [m for item in meta for m in _tensor_metas(item)]
    if isinstance(meta, dict):
        return [m for item in meta.values() for m in _tensor_metas(item)]
    return []


def _type_name(node, module):
    if node.op == "call_module":
        return type(module).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return node.target
    return _KINDS[node.op]


class SummaryGraph:
    """The data-flow graph of ``model`` run on ``dummy_input``.

    Args:
        model: an ``nn.Module`` (DataParallel/DDP wrappers are looked through; names are the inner model's).
        dummy_input: a tensor or a tuple of positional inputs (batch of one is enough), moved to the
            model's device.
        apply_scope_name_workarounds: Distiller's switch for repairing ONNX-trace scope names; accepted so
            that Distiller code runs unchanged, and without effect: fx names every op after its module.
        leaf_modules: module names or classes to keep as opaque calls (untraceable parts are made leaves
            automatically).
    Raises:
        GraphCaptureError: when the model cannot be traced or does not run on ``dummy_input``.
    """

    def __init__(self, model, dummy_input, apply_scope_name_workarounds=True, leaf_modules=()):
        self.model = model.module if model_is_parallel(model) else model
        self.graph_module = trace_model(self.model, leaf_modules)
        propagate_shapes(self.graph_module, dummy_input)
        self.ops = collections.OrderedDict()
        self._module_ops = collections.defaultdict(list)
        self._op_of_node = {}
        modules = dict(self.graph_module.named_modules())
        for node in self.graph_module.graph.nodes:
            self._add_op(node, modules)
        for op in self.ops.values():
            for parent in dict.fromkeys(op.node.all_input_nodes):
                op.inputs.append(self._op_of_node[parent].name)
                self.ops[self._op_of_node[parent].name].outputs.append(op.name)

    def _add_op(self, node, modules):
        module = modules[node.target] if node.op == "call_module" else None
        name = node.name
        if module is not None:
            calls = self._module_ops[node.target]
            name = node.target if not calls else f"{node.target}__{len(calls)}"
        if name in self.ops:  # a functional op named like a module: keep both reachable
            name = f"{name}__{node.name}"
        metas = _tensor_metas(node.meta.get("tensor_meta"))
        op = Op(name, _KINDS[node.op], _type_name(node, module), node.target,
                node.target if module is not None else None, module,
                [tuple(m.shape) for m in metas], metas[0].dtype if metas else None, node)
        self.ops[name] = op
        self._op_of_node[node] = op
        if module is not None:
            self._module_ops[node.target].append(name)

    # ------------------------------------------------------------------------------------- lookup
    def __iter__(self):
        return iter(self.ops.values())

    def __len__(self):
        return len(self.ops)

    def op(self, name):
        """The op named ``name`` (or the first call of the module named ``name``).

        Raises:
            KeyError: naming close matches when there is no such op.
        """
        if name in self.ops:
            return self.ops[name]
        if name in self._module_ops:
            return self.ops[self._module_ops[name][0]]
        hint = suggest(name, list(self.ops))
        raise KeyError(f"no op or module named '{name}' in the graph" + (f"; did you mean {hint}?" if hint else ""))

    def find_op(self, name):
        """Like :meth:`op` but returns None when there is no such op (Distiller's name)."""
        try:
            return self.op(name)
        except KeyError:
            return None

    def op_of_node(self, node):
        """The :class:`Op` built from the fx ``node``."""
        return self._op_of_node[node]

    def module_ops(self, module_name):
        """Names of the ops that call module ``module_name`` (one per call, in execution order)."""
        return list(self._module_ops.get(module_name, ()))

    def module_name(self, op_name):
        """The module called by op ``op_name``, or None for a non-module op."""
        return self.op(op_name).module_name

    def adjacency_map(self, dedicated_modules_only=False):
        """Each op's immediate predecessors and successors (see :func:`distiller.graph.adjacency.adjacency_map`)."""
        return adjacency_map(self, dedicated_modules_only)

    def layers_topological_order(self):
        """Names of the called modules, in order of their first call."""
        return list(self._module_ops)

    def named_params_layers(self):
        """Yields ``(module_name, param_name, param)`` for the parameters of every called module."""
        for module_name in self._module_ops:
            module = self.op(module_name).module
            for pname, param in module.named_parameters(recurse=False):
                yield module_name, f"{module_name}.{pname}", param

    def input_shape(self, op_name):
        """The shape of the first tensor that op ``op_name`` reads, or None."""
        for parent in self.op(op_name).node.all_input_nodes:
            shape = self._op_of_node[parent].shape
            if shape is not None:
                return shape
        return None

    # ---------------------------------------------------------------------------------- adjacency
    def _expand(self, names):
        """Op names for ``names`` (op names, or module names standing for all the module's calls)."""
        if isinstance(names, str):
            names = [names]
        out = []
        for name in names:
            out.extend(self._module_ops[name] if name in self._module_ops else [self.op(name).name])
        return out

    def predecessors(self, name, depth=1):
        """Names of the ops ``depth`` steps upstream of op (or module) ``name``."""
        return self._walk(self._expand(name), depth, "inputs")

    def successors(self, name, depth=1):
        """Names of the ops ``depth`` steps downstream of op (or module) ``name``."""
        return self._walk(self._expand(name), depth, "outputs")

    def _walk(self, names, depth, direction):
        frontier = list(names)
        for _ in range(depth):
            frontier = list(dict.fromkeys(n for name in frontier for n in getattr(self.ops[name], direction)))
        return frontier

    def predecessors_f(self, name, types):
        """The nearest upstream ops of the given type(s), looking through ops of other types.

        Args:
            name: an op or module name.
            types: a type name (``'Conv2d'``) or a list of them.
        Returns:
            op names (module names for first module calls), nearest first.
        """
        return self._search(name, types, "inputs")

    def successors_f(self, name, types):
        """The nearest downstream ops of the given type(s), looking through ops of other types
        (e.g. the BatchNorm after a convolution: ``successors_f('conv1', 'BatchNorm2d')``)."""
        return self._search(name, types, "outputs")

    def _search(self, name, types, direction):
        types = {types} if isinstance(types, str) else set(types)
        found, seen = [], set()
        queue = collections.deque(n for start in self._expand(name) for n in getattr(self.ops[start], direction))
        while queue:
            current = queue.popleft()
            if current in seen:
                continue
            seen.add(current)
            op = self.ops[current]
            if op.type in types:
                found.append(current)
            else:
                queue.extend(getattr(op, direction))
        return found

    # --------------------------------------------------------------------------------------- cost
    def macs(self, op_name):
        """Dense MACs per sample of op ``op_name`` (conv/linear module calls; 0 for other ops)."""
        op = self.op(op_name)
        if op.module is None or op.shape is None:
            return 0
        return module_macs(op.module, self.input_shape(op.name), op.shape)

    def module_macs(self):
        """module name -> dense MACs per sample, summed over the module's calls (counted layers only)."""
        totals = {}
        for module_name, op_names in self._module_ops.items():
            macs = sum(self.macs(n) for n in op_names)
            if macs:
                totals[module_name] = macs
        return totals

    def total_macs(self):
        """Dense MACs per sample of the whole model (convolutions and fully connected layers)."""
        return sum(self.module_macs().values())

    def module_params(self):
        """module name -> number of parameter elements it owns, for every called module."""
        return {name: module_params(self.op(name).module) for name in self._module_ops}
