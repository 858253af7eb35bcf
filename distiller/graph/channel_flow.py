"""Channel-flow interpreter: runs a captured graph on *label tensors* instead of activations.

Each tensor is replaced by a :class:`Flow`: an int64 label tensor of the same shape whose elements name
the channel slot they belong to (see :mod:`distiller.graph.slots`), and optionally a bool tensor telling
which elements are exactly zero (for finding removable zero filters). Data-movement ops (view, cat,
split, transpose...) are run natively on the labels, so channels are followed through any reshaping;
modules with a :class:`~distiller.graph.layer_rules.LayerRule` (convolutions, linear layers, norms...)
say through a :class:`LayerCall` which channels they read, create or pass on; elementwise ops tie
channels together. What the interpreter learns is written to a *ledger*:
:class:`~distiller.graph.channel_ledger.Analysis` on the first run,
:class:`~distiller.graph.channel_ledger.Verification` when it re-runs the graph with the thinned shapes to
prove that every op still sees the same channels in the same order.
"""
from __future__ import annotations

import collections
import copy
import functools
import math
import operator
from typing import Any, Callable, Optional, Sequence, cast

import torch
from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

from .channel_rules import binary_kind, classify
from .layer_rules import LayerRule, layer_rule_for
from .slots import channel_profile, squeeze_constant_dims

__all__ = ["Flow", "LayerCall", "run_flow", "along"]

Flow = collections.namedtuple("Flow", ["labels", "zeros"])
Flow.__doc__ = "A tensor followed by the analysis: slot labels and (optionally) which elements are zero."

_IN_PLACE = {"iadd", "isub", "imul", "itruediv"}


def _map_flows(value, fn):
    """``value`` with every Flow inside (nested tuples, lists, dicts) replaced by ``fn(flow)``."""
    if isinstance(value, Flow):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_flows(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_flows(v, fn) for k, v in value.items()}
    return value


def _flows_in(value):
    found = []
    _map_flows(value, found.append)
    return found


def along(slots: torch.Tensor, shape: Sequence[int], dim: int) -> torch.Tensor:
    """A tensor of ``shape`` holding ``slots`` along ``dim`` (one slot: everywhere), as an expanded view."""
    view = [1] * len(shape)
    if len(shape):
        view[dim] = slots.numel()
    return slots.reshape(view).expand(shape)


def _per_channel_zero(zeros, dim=1):
    """True for the positions along ``dim`` whose elements are all zero."""
    if zeros is None:
        return None
    dim = dim % zeros.dim()
    small = squeeze_constant_dims(zeros)
    return small.movedim(dim, 0).reshape(small.shape[dim], -1).all(dim=1).expand(zeros.shape[dim])


class LayerCall:
    """One call of a module with a :class:`~distiller.graph.layer_rules.LayerRule`, as its rule sees it.

    Channels are named by *slots* (int64 tensors, one slot per position along a dimension). A rule reads
    the slots of its input with :meth:`channels`, records which slots each position of its dimension
    attributes holds (:meth:`uses`, :meth:`reads`, :meth:`creates`) and returns its output, usually built
    with :meth:`output` or one of its inputs passed on unchanged.

    Attributes:
        op: the graph :class:`~distiller.graph.Op`; ``module``: the called module.
        inputs: the call's positional arguments (flows for tensors); ``kwargs``: its keyword arguments.
        tracking_zeros: whether the analysis follows exactly-zero channels (finding zero filters).
        exact: a channel is zero only when exactly zero (a norm's shift or a bias makes it a constant).
    """

    def __init__(self, interpreter: _Interpreter, op: Any, args: tuple, kwargs: dict) -> None:
        self._interpreter, self._ledger = interpreter, interpreter.ledger
        self.op, self.module, self.inputs, self.kwargs = op, op.module, args, kwargs
        self.tracking_zeros, self.exact = interpreter.track_zeros, interpreter.exact

    def channels(self, flow: Flow, dim: int, role: str = "input") -> torch.Tensor:
        """The slots along ``dim`` of ``flow``; when its channels are mixed over several dimensions they are
        blocked and fresh, fixed slots stand for them."""
        return self._interpreter._profile(self.op, flow, dim, role)

    def uses(self, attr: str, slots: torch.Tensor) -> torch.Tensor:
        """Records that the positions of dimension ``attr`` hold ``slots`` (a second call of the same module
        unites them with the first call's); returns the recorded slots."""
        return self._ledger.usage(self.op, attr, slots)

    def reads(self, attr: str, slots: torch.Tensor, flow: Flow, dim: int) -> None:
        """Like :meth:`uses`, for the input dimension of a layer that sums over it (conv, linear): a channel
        can go only when it is zero or read with zero weights here."""
        self._ledger.usage(self.op, attr, slots)
        self._ledger.contraction(self.op, attr, slots, self.input_zero(flow, dim))

    def creates(self, attr: str, count: int) -> torch.Tensor:
        """New channels for the ``count`` positions of ``attr`` (a layer's outputs); returns their slots."""
        return self._ledger.usage(self.op, attr, None, count)

    def unite(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Ties ``a[i]`` to ``b[i]``: the channels go together (e.g. the channels of one GroupNorm group)."""
        self._ledger.union(a, b)

    def same_count(self, slots: torch.Tensor, block_size: int) -> None:
        """Every block of ``block_size`` consecutive ``slots`` must keep as many channels (grouped layers)."""
        self._ledger.uniform_blocks(slots, block_size)

    def shifts(self, slots: torch.Tensor, constant: torch.Tensor, flow: Flow, dim: int) -> None:
        """Records that a zero input channel leaves this layer as ``constant`` (a norm's shift), per slot."""
        self._ledger.norm_constant(self.op, slots, constant, self.input_zero(flow, dim))

    def input_zero(self, flow: Flow, dim: int) -> Optional[torch.Tensor]:
        """Bool per position along ``dim``: all elements of ``flow`` there are zero (None without tracking)."""
        return _per_channel_zero(flow.zeros, dim)

    def zero_filters(self, attr: str) -> torch.Tensor:
        """Bool per position of ``attr``: this module's weights there are all zero (its zero filters)."""
        return self._interpreter.zero_filters(self.op.module_name, self.module, attr)

    def output(self, slots: torch.Tensor, dim: int, zeros: Optional[torch.Tensor] = None) -> Flow:
        """The call's output: its traced shape (with the batch of the first input) holding ``slots`` along
        ``dim``; ``zeros`` per position (default, when tracking: the zero filters of the rule's ``'out'``
        dimension)."""
        shape = self._interpreter._shape(self.op, self.inputs[0], slots.numel(), dim)
        if self.tracking_zeros:
            zeros = along(zeros if zeros is not None else self._zero_outputs(), shape, dim)
        return Flow(along(slots, shape, dim), zeros)

    def through(self, module: torch.nn.Module) -> Any:
        """Runs this call as a call of ``module`` (the module a wrapper holds and computes, see
        :class:`~distiller.graph.wrappers.WrapperRule`); dimensions are recorded under this call's module name."""
        held = copy.copy(self.op)
        held.module, held.type = module, type(module).__name__
        return self._interpreter.visit(held, self.inputs, self.kwargs)

    def function(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Runs ``fn(*args, **kwargs)`` on flows as the graph runs a call of that function (``operator.add``,
        ``torch.cat``...), for a module that computes such a function itself."""
        call = copy.copy(self.op)
        call.kind, call.target, call.type, call.module = "function", fn, fn.__name__, None
        return self._interpreter.visit(call, args, kwargs)

    def with_zeros(self, flow: Flow, keep_zero: torch.Tensor, dim: int) -> Flow:
        """``flow`` where only the positions along ``dim`` with ``keep_zero`` stay zero."""
        return Flow(flow.labels, flow.zeros & along(keep_zero, flow.zeros.shape, dim))

    def _zero_outputs(self) -> torch.Tensor:
        rule = cast(LayerRule, layer_rule_for(self.module))
        attr = next(a for a, role in rule.dims.items() if role == "out")
        return self.zero_filters(attr)


class _Interpreter:
    def __init__(self, graph, ledger, zero_filters, exact):
        self.graph, self.ledger, self.zero_filters, self.exact = graph, ledger, zero_filters, exact
        self.track_zeros = zero_filters is not None

    def run(self):
        env, last_user = {}, {}
        for op in self.graph:
            for parent in op.node.all_input_nodes:
                last_user[parent] = op.node
        for op in self.graph:
            args = fx.node.map_arg(op.node.args, env.__getitem__)
            kwargs = fx.node.map_arg(op.node.kwargs, env.__getitem__)
            try:
                value = self.visit(op, args, kwargs)
            except Exception as err:  # an op that cannot run on labels (or on the thinned shapes)
                value = self.ledger.failed(op, err, functools.partial(self._opaque, op, args, kwargs))
            value = self.ledger.after_node(op, value)
            env[op.node] = value
            in_place = op.type in _IN_PLACE or (op.kind == "method" and op.type.endswith("_"))
            if in_place and isinstance(op.node.args[0], fx.Node):
                env[op.node.args[0]] = value
            for parent in op.node.all_input_nodes:
                if last_user[parent] is op.node:
                    del env[parent]

    # ---------------------------------------------------------------------------------- dispatch
    def visit(self, op, args, kwargs):
        kind = classify(op)
        if kind in ("input", "attribute", "output"):
            return getattr(self, f"_{kind}")(op, args)
        if op.kind != "module" and not _flows_in((args, kwargs)):
            return self._native(op, args, kwargs)
        return getattr(self, f"_{kind}")(op, args, kwargs)

    def _call(self, op, args, kwargs, pick):
        """Runs the op's own function on the labels (``pick='labels'``) or zero masks."""
        args, kwargs = _map_flows((args, kwargs), operator.attrgetter(pick))
        if op.kind == "module":
            return op.module(*args, **kwargs)
        if op.kind == "method":
            return getattr(args[0], op.target)(*args[1:], **kwargs)
        return op.target(*args, **kwargs)

    def _native(self, op, args, kwargs):
        """Python values (sizes, arithmetic) and tensors created from them (no channel identity)."""
        try:
            result = self._call(op, args, kwargs, "labels")
        except Exception:  # e.g. a constant creator whose arguments we do not have: use the traced shape
            return self._neutral(op.shape) if op.shape is not None else None
        return self._neutral(result.shape) if isinstance(result, torch.Tensor) else result

    def _neutral(self, shape):
        return Flow(torch.full(shape, -1, dtype=torch.long), self._no_zeros(shape))

    def _no_zeros(self, shape):
        return torch.zeros(shape, dtype=torch.bool) if self.track_zeros else None

    def _constant(self, op, args, kwargs):
        return self._native(op, args, kwargs)

    def _scalar(self, op, args, kwargs):
        if op.type == "getattr" and args[1] == "dtype":
            return self.graph.op_of_node(op.node.args[0]).dtype
        return self._call(op, args, kwargs, "labels")

    # ---------------------------------------------------------------------------- graph borders
    def _input(self, op, args):
        if op.shape is None:
            return None
        dim = 1 if len(op.shape) > 1 else 0
        count = op.shape[dim] if op.shape else 1
        slots = self.ledger.fixed_slots(op, count, f"it is the model input '{op.name}'")
        labels = along(slots, op.shape, dim)
        return Flow(labels, self._no_zeros(labels.shape))

    def _attribute(self, op, args):
        value = operator.attrgetter(op.target)(self.graph.graph_module)
        if not isinstance(value, torch.Tensor):
            return value
        if value.numel() == 1:
            return self._neutral(value.shape)
        slots = self.ledger.fixed_slots(op, 1, f"it meets tensor attribute '{op.target}', which thinning "
                                              f"does not slice")
        zeros = (value == 0).cpu() if self.track_zeros else None
        return Flow(along(slots, value.shape, 0), zeros)

    def _output(self, op, args):
        for flow in _flows_in(args):
            self.ledger.block(flow.labels, "it reaches the model output")

    def _opaque(self, op, args, kwargs):
        self.ledger.opaque_call(op, _map_flows((args, kwargs), lambda flow: None))
        for flow in _flows_in((args, kwargs)):
            self.ledger.block(flow.labels, f"it is consumed by '{op.name}' ({op.type}), whose channel "
                                           f"mapping thinning does not know")
        if not op.output_shapes:
            return None
        slots = self.ledger.fixed_slots(op, 1, f"it comes out of '{op.name}' ({op.type}), an op thinning "
                                               f"does not know")
        # The output mirrors the traced structure (e.g. attention's ``(output, None)``).
        return _mirror(op.node.meta["tensor_meta"], lambda shape: Flow(along(slots, shape, 0), self._no_zeros(shape)))

    # ----------------------------------------------------------------------------------- layers
    def _layer(self, op, args, kwargs):
        return layer_rule_for(op.module).flow(LayerCall(self, op, args, kwargs))

    def _profile(self, op, flow, dim, role):
        """Slots of the channels along ``dim`` of an op's input; blocks them when they are mixed."""
        profile = channel_profile(flow.labels, dim)
        if profile is None:
            profile = self.ledger.canonical_profile(flow.labels, dim)
        if profile is None:
            self.ledger.block(flow.labels, f"the {role} of '{op.name}' mixes channels")
            profile = self.ledger.fixed_slots(op, flow.labels.shape[dim], f"'{op.name}' reads mixed channels",
                                              key=f"{op.name}:{role}")
        return profile

    @staticmethod
    def _shape(op, x, channels, dim=1):
        """The op's traced output shape with the batch of ``x`` and ``channels`` along ``dim``."""
        shape = list(op.shape)
        shape[0] = x.labels.shape[0]
        shape[dim] = channels
        return shape

    # ------------------------------------------------------------------------------ elementwise
    def _zero_preserving(self, op, args, kwargs):
        return _flows_in(args)[0]

    def _nonzero(self, op, args, kwargs):
        x = _flows_in(args)[0]
        return Flow(x.labels, self._no_zeros(x.labels.shape))

    def _binary(self, op, args, kwargs):
        a = args[0]
        b = args[1] if len(args) > 1 else kwargs.get("other")
        kind = binary_kind(op)
        if not isinstance(b, Flow):  # tensor (op) scalar
            keeps_zeros = kind != "add" or b == 0
            return Flow(a.labels, a.zeros if keeps_zeros else self._no_zeros(a.labels.shape))
        if not isinstance(a, Flow):  # scalar (op) tensor: 0 - x and s * x keep x's zeros
            keeps_zeros = kind == "mul" or (kind == "add" and a == 0)
            return Flow(b.labels, b.zeros if keeps_zeros else self._no_zeros(b.labels.shape))
        shape = torch.broadcast_shapes(a.labels.shape, b.labels.shape)
        la, lb = squeeze_constant_dims(a.labels, b.labels)
        self.ledger.union(la, lb)
        labels = torch.where(la >= 0, la, lb).expand(shape)
        zeros = None
        if self.track_zeros:
            za, zb = squeeze_constant_dims(a.zeros, b.zeros)
            zeros = (za & zb if kind == "add" else za | zb if kind == "mul" else za).expand(shape)
        return Flow(labels, zeros)

    # ------------------------------------------------------------------------------- attention
    def _softmax(self, op, args, kwargs):
        x = _flows_in(args)[0]
        dim = op.module.dim if op.kind == "module" else args[1] if len(args) > 1 else kwargs.get("dim")
        if dim is None or squeeze_constant_dims(self.ledger.canonical(x.labels)).shape[dim] > 1:
            return self._opaque(op, args, kwargs)  # normalizes across channels
        return Flow(x.labels, self._no_zeros(x.labels.shape))

    def _matmul(self, op, args, kwargs):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
        if not (isinstance(a, Flow) and isinstance(b, Flow)) or a.labels.dim() < 2 or b.labels.dim() < 2:
            return self._opaque(op, args, kwargs)
        return self._product(op, args, kwargs, a, b)

    def _attention(self, op, args, kwargs):
        """``softmax(q @ k^T) @ v``: heads (batch dims) and the summed dims tie q, k and v together."""
        (q, k, v), mask = args[:3], args[3] if len(args) > 3 else kwargs.get("attn_mask")
        if not all(isinstance(t, Flow) and t.labels.dim() >= 2 for t in (q, k, v)) or isinstance(mask, Flow):
            return self._opaque(op, args, kwargs)
        keys = Flow(k.labels.transpose(-2, -1), None if k.zeros is None else k.zeros.transpose(-2, -1))
        scores = self._product(op, args, kwargs, q, keys)
        return self._product(op, args, kwargs, Flow(scores.labels, self._no_zeros(scores.labels.shape)), v)

    def _product(self, op, args, kwargs, a, b):
        """``a @ b``: the summed dim's channels of ``a`` and ``b`` go together (a channel zero or removed in
        one contributes nothing), so do the batch dims'; the output keeps ``a``'s rows and ``b``'s columns."""
        la, lb = squeeze_constant_dims(a.labels).unsqueeze(-1), squeeze_constant_dims(b.labels).unsqueeze(-3)
        self.ledger.union(la, lb)
        paired = self.ledger.canonical(torch.where(la >= 0, la, lb))
        if squeeze_constant_dims(paired).shape[-2] > 1:
            return self._opaque(op, args, kwargs)  # the summed dim holds several channels
        shape = torch.broadcast_shapes(a.labels.shape[:-2], b.labels.shape[:-2]) + (a.labels.shape[-2],
                                                                                      b.labels.shape[-1])
        zeros = None
        if self.track_zeros:
            za = squeeze_constant_dims(a.zeros).unsqueeze(-1)
            zb = squeeze_constant_dims(b.zeros).unsqueeze(-3)
            zeros = (~(~za & ~zb).any(dim=-2)).expand(shape)
        return Flow(paired.narrow(-2, 0, 1).squeeze(-2).expand(shape), zeros)

    # ------------------------------------------------------------------------ spatial / reduce
    def _spatial(self, op, args, kwargs):
        x = args[0]
        if op.type == "pad" and _pad_touches_channels(op, x):
            return self._opaque(op, args, kwargs)
        profile = self._profile(op, x, 1, "input")
        shape = self._shape(op, x, profile.numel())
        zeros = None
        if self.track_zeros:
            value = args[3] if len(args) > 3 else kwargs.get("value", 0)
            zero_kept = op.type != "pad" or not value
            zeros = along(_per_channel_zero(x.zeros) & zero_kept, shape, 1)
        return Flow(along(profile, shape, 1), zeros)

    def _reduction(self, op, args, kwargs):
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if dims is None:
            return self._opaque(op, args, kwargs)
        dims = [d % x.labels.dim() for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        small = squeeze_constant_dims(x.labels)
        if any(small.shape[d] > 1 for d in dims):
            return self._opaque(op, args, kwargs)  # reduces across channels
        shape = [1 if d in dims else size for d, size in enumerate(x.labels.shape)]
        if not keepdim:
            shape = [size for d, size in enumerate(x.labels.shape) if d not in dims]
        labels = small.amax(dim=dims, keepdim=keepdim).expand(shape)
        zeros = None
        if x.zeros is not None:
            zeros = _reduce_all(squeeze_constant_dims(x.zeros), dims, keepdim).expand(shape)
        return Flow(labels, zeros)

    # --------------------------------------------------------------------------------- movement
    def _movement(self, op, args, kwargs):
        args, kwargs = _map_flows((args, kwargs), _contiguous)
        labels = self._call(op, args, kwargs, "labels")
        zeros = self._call(op, args, kwargs, "zeros") if self.track_zeros else None
        if isinstance(labels, torch.Tensor):
            self._check_layout(op, labels)
            return Flow(labels, zeros)
        if not isinstance(labels, (tuple, list)):  # e.g. a None picked out of a tuple
            return labels
        if op.type in ("chunk", "split"):
            self._equal_pieces(op, args, kwargs)
        pieces = zeros if zeros is not None else [None] * len(labels)
        return type(labels)(Flow(l, z) for l, z in zip(labels, pieces))

    def _equal_pieces(self, op, args, kwargs):
        """``chunk(n)`` and ``split(size)`` cut equal pieces: every piece must keep as many channels."""
        x = args[0]
        count = args[1] if len(args) > 1 else kwargs.get("chunks", kwargs.get("split_size_or_sections",
                                                                              kwargs.get("split_size")))
        dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
        if not isinstance(count, int):
            return  # explicit piece sizes: the layout check keeps the channels if they change
        profile = channel_profile(x.labels, dim)
        if profile is not None:
            size = math.ceil(profile.numel() / count) if op.type == "chunk" else count
            self.ledger.uniform_blocks(profile, size)

    def _check_layout(self, op, labels):
        """A moved tensor must carry its channels along one dim; a view splitting the channels into a
        fixed and a computed dim (a channel shuffle) ties each channel to its partners in the fixed dims."""
        varying = [d for d, size in enumerate(squeeze_constant_dims(labels).shape) if size > 1]
        if len(varying) > 1:  # slots may differ where their roots agree (after an earlier shuffle)
            varying = [d for d, size in enumerate(squeeze_constant_dims(self.ledger.canonical(labels)).shape)
                       if size > 1]
        if len(varying) <= 1:
            return
        dynamic = [d for d in varying if _dynamic_size(op, d)]
        if len(dynamic) == 1:
            rows = labels.movedim(dynamic[0], 0).reshape(labels.shape[dynamic[0]], -1)
            self.ledger.union(rows[:, :1].expand_as(rows), rows)
            return
        self.ledger.block(labels, f"'{op.name}' ({op.type}) spreads channels over dimensions {varying}")


def _mirror(meta, make):
    """``meta`` (a node's traced tensor metadata, possibly nested in tuples and lists) with every tensor's
    metadata replaced by ``make(shape)``."""
    if isinstance(meta, TensorMetadata):
        return make(meta.shape)
    if isinstance(meta, (tuple, list)):
        return type(meta)(_mirror(item, make) for item in meta)
    return meta


def _contiguous(flow):
    """Materializes expanded labels for ``view`` (a view of an expanded tensor is often impossible)."""
    zeros = flow.zeros.contiguous() if flow.zeros is not None else None
    return Flow(flow.labels.contiguous(), zeros)


def _reduce_all(tensor, dims, keepdim):
    for dim in sorted(dims, reverse=True):
        tensor = tensor.all(dim=dim, keepdim=keepdim)
    return tensor


def _dynamic_size(op, dim):
    """True when a view/reshape computes its size along ``dim`` from the input (-1 or a traced value)."""
    if op.type not in ("view", "reshape"):
        return False
    sizes = op.node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    return dim < len(sizes) and (isinstance(sizes[dim], fx.Node) or sizes[dim] == -1)


def _pad_touches_channels(op, x):
    pad = op.node.args[1] if len(op.node.args) > 1 else op.node.kwargs.get("pad", ())
    return len(pad) > 2 * (x.labels.dim() - 2)


def run_flow(graph: Any, ledger: Any, zero_filters: Optional[Callable] = None, exact: bool = False) -> Any:
    """Runs ``graph`` on label tensors, reporting to ``ledger``.

    Args:
        graph: a :class:`~distiller.graph.SummaryGraph`.
        ledger: an :class:`~distiller.graph.channel_ledger.Analysis` or
            :class:`~distiller.graph.channel_ledger.Verification`.
        zero_filters: ``fn(module_name, module, attr) -> BoolTensor`` telling which positions of a layer's
            dimension ``attr`` have all-zero weights (its zero filters); None to skip zero tracking.
        exact: a norm keeps a zero channel zero only when its shift is zero (by default it always does, as a
            zero filter's norm parameters are removed with it).
    """
    _Interpreter(graph, ledger, zero_filters, exact).run()
    return ledger
