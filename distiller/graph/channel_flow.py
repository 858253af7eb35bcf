"""Channel-flow interpreter: runs a captured graph on *label tensors* instead of activations.

Each tensor is replaced by a :class:`Flow`: an int64 label tensor of the same shape whose elements name
the channel slot they belong to (see :mod:`distiller.thinning.slots`), and optionally a bool tensor telling
which elements are exactly zero (for finding removable zero filters). Data-movement ops (view, cat,
split, transpose...) are run natively on the labels, so channels are followed through any reshaping;
convolutions and linear layers consume channels and create new ones; elementwise ops tie channels
together. What the interpreter learns is written to a *ledger*: :class:`~distiller.thinning.ledger.Analysis`
on the first run, :class:`~distiller.thinning.ledger.Verification` when it re-runs the graph with the
thinned shapes to prove that every op still sees the same channels in the same order.
"""
import collections
import math
import operator

import torch
from torch import fx

from .rules import binary_kind, classify
from .slots import channel_profile, squeeze_constant_dims

__all__ = ["Flow", "run_flow", "norm_constant"]

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


def along(slots, shape, dim):
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


def norm_constant(module):
    """What a BatchNorm outputs (eval mode) for an all-zero channel, per channel; None when it cannot shift."""
    if module.running_mean is None or not module.affine:
        return None
    with torch.no_grad():
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return (module.bias - module.running_mean * scale).detach().cpu()


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
                value = self.ledger.failed(op, err, lambda: self._opaque(op, args, kwargs))
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
        for flow in _flows_in((args, kwargs)):
            self.ledger.block(flow.labels, f"it is consumed by '{op.name}' ({op.type}), whose channel "
                                           f"mapping thinning does not know")
        if not op.output_shapes:
            return None
        slots = self.ledger.fixed_slots(op, 1, f"it comes out of '{op.name}' ({op.type}), an op thinning "
                                               f"does not know")
        flows = [Flow(along(slots, shape, 0), self._no_zeros(shape)) for shape in op.output_shapes]
        return flows[0] if op.shape is not None else tuple(flows)

    # ----------------------------------------------------------------------------------- layers
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

    def _conv(self, op, args, kwargs):
        module, x = op.module, args[0]
        channels = x.labels.shape[1]
        profile = self._profile(op, x, 1, "input")
        in_zero = _per_channel_zero(x.zeros)
        if module.groups == channels and module.groups > 1:  # depthwise: out channel o reads channel o // k
            repeat = module.out_channels // module.groups
            self.ledger.usage(op, "in_channels", profile)
            slots = self.ledger.usage(op, "out_channels", profile.repeat_interleave(repeat))
            out = along(slots, self._shape(op, x, slots.numel()), 1)
            zeros = None
            if self.track_zeros:
                filter_zero = self.zero_filters(op.module_name, module) | in_zero.repeat_interleave(repeat)
                if self.exact and module.bias is not None:
                    filter_zero &= (module.bias.detach() == 0).cpu()
                zeros = along(filter_zero, out.shape, 1)
            return Flow(out, zeros)
        self.ledger.usage(op, "in_channels", profile)
        self.ledger.contraction(op, "in_channels", profile, in_zero)
        if module.groups > 1:
            self.ledger.uniform_blocks(profile, channels // module.groups)
        slots = self.ledger.usage(op, "out_channels", None, module.out_channels)
        if module.groups > 1:
            self.ledger.uniform_blocks(slots, module.out_channels // module.groups)
        return self._produced(op, x, slots, 1)

    def _linear(self, op, args, kwargs):
        module, x = op.module, args[0]
        profile = self._profile(op, x, -1, "input")
        self.ledger.usage(op, "in_features", profile)
        self.ledger.contraction(op, "in_features", profile, _per_channel_zero(x.zeros, -1))
        slots = self.ledger.usage(op, "out_features", None, module.out_features)
        return self._produced(op, x, slots, -1)

    def _produced(self, op, x, slots, dim):
        shape = self._shape(op, x, slots.numel(), dim)
        out = along(slots, shape, dim)
        zeros = along(self.zero_filters(op.module_name, op.module), shape, dim) if self.track_zeros else None
        return Flow(out, zeros)

    @staticmethod
    def _shape(op, x, channels, dim=1):
        """The op's traced output shape with the batch of ``x`` and ``channels`` along ``dim``."""
        shape = list(op.shape)
        shape[0] = x.labels.shape[0]
        shape[dim] = channels
        return shape

    def _norm(self, op, args, kwargs):
        x = args[0]
        profile = self._profile(op, x, 1, "input")
        self.ledger.usage(op, "num_features", profile)
        if not self.track_zeros:
            return x
        constant = norm_constant(op.module)
        if constant is not None:
            self.ledger.norm_constant(op, profile, constant, _per_channel_zero(x.zeros))
        if constant is None or not self.exact:
            return x  # by convention (Distiller's), a zero filter's channel stays zero through its BatchNorm
        return Flow(x.labels, x.zeros & along(constant == 0, x.zeros.shape, 1))

    def _prelu(self, op, args, kwargs):
        self.ledger.usage(op, "num_parameters", self._profile(op, args[0], 1, "input"))
        return args[0]

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


def run_flow(graph, ledger, zero_filters=None, exact=False):
    """Runs ``graph`` on label tensors, reporting to ``ledger``.

    Args:
        graph: a :class:`~distiller.graph.SummaryGraph`.
        ledger: an :class:`~distiller.thinning.ledger.Analysis` or
            :class:`~distiller.thinning.ledger.Verification`.
        zero_filters: ``fn(module_name, module) -> BoolTensor`` telling which output channels of a conv or
            linear layer are zero; None to skip zero tracking.
        exact: a BatchNorm keeps a zero channel zero only when its shift is zero (by default it always does,
            as a zero filter's BatchNorm is removed with it).
    """
    _Interpreter(graph, ledger, zero_filters, exact).run()
    return ledger
